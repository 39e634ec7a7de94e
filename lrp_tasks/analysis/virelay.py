"""Export an audit and its SpRAy results as a ViRelAy project (HDF5 files + project YAML).

ViRelAy (PyPI ``virelay``) is the viewer of CoRelAy/SpRAy results. Its written spec and its code
disagree; this writes what its loader (``virelay.model``) reads:

* ``input.h5``: ``data`` (N, H, W, 3) uint8 pictures (other channel counts become grey: their
  mean, repeated; ViRelAy's ``Sample`` needs 3 axes and its server hands them to PIL, which takes
  neither (H, W, 1) nor 2 channels) and ``label`` (N,) class indices. ViRelAy
  reads a sample by *position*, so samples are renumbered 0..N-1 in ascending audit sample index;
  ``sample_index`` (ignored by ViRelAy) keeps the audit's index of each position.
* ``attribution.h5``: ``attribution`` (N, H, W, C) (ViRelAy sums the channels; a one-channel map is
  written as (N, H, W, 2), the map and zeros: ViRelAy sums a last axis only when it is longer than 1,
  and 7 of its 8 colour maps fail on an (H, W, 1) map), ``prediction`` (N, classes)
  logits, ``label`` (N,), ``index`` (N,) positions, and ``sample_index``.
* ``analysis.h5``: one group per class (category name = class index as text) with ``index``
  (positions of the class's samples), ``cluster/kmeans-<k>`` for every stored k (k zero-padded to two
  digits, ``kmeans-02`` … ``kmeans-10``: ViRelAy lists the names as text and opens the first) and
  ``embedding/spectral`` (the eigenvectors, attribute ``eigenvalue``) and ``embedding/tsne``
  (the 2-D layout, when SpRAy computed one).
* ``label-map.json`` and ``project.yaml`` pointing at them (paths relative to the YAML).

Each file is written to a hidden temporary and renamed into place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from lrp_tasks.store import open_audit
from lrp_tasks.store.output import output_file
from lrp_tasks.store.reader import AuditReader

from .results import SprayStoreError, read_spray

PROJECT, LABEL_MAP, INPUT, ATTRIBUTION, ANALYSIS = (
    "project.yaml",
    "label-map.json",
    "input.h5",
    "attribution.h5",
    "analysis.h5",
)
UNKNOWN_LABEL = -1


class VirelayExportError(RuntimeError):
    """The audit cannot be exported to ViRelAy as asked (no inputs kept, no committed samples...)."""


def _hidden_then_rename(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a hidden temporary, fsync, rename (:func:`~lrp_tasks.store.output.output_file`: a
    failure, a full disk included, removes the temporary and names the file in one line)."""
    with output_file(str(path)) as tmp:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())


def _attribution_layout(block: np.ndarray) -> np.ndarray:
    """(n, C, H, W) or (n, H, W) → (n, H, W, C), one channel as (n, H, W, 2): the map and zeros.

    ViRelAy's ``Attribution`` needs 3 axes, and its heatmap code sums the last axis only when it is
    longer than 1; 7 of its 8 colour maps then index the map as 2-D, so (H, W, 1) fails there. A
    zero second channel makes it sum to exactly the map."""
    last = _channels_last(block)
    if last.shape[-1] == 1:
        return np.concatenate([last, np.zeros_like(last)], axis=-1)
    return last


def clustering_name(k: int) -> str:
    """``kmeans-02``: names that sort as text in the order of k (ViRelAy sorts them as text)."""
    return f"kmeans-{k:02d}"


def _channels_last(block: np.ndarray) -> np.ndarray:
    """(n, C, H, W) or (n, H, W) → (n, H, W, C)."""
    if block.ndim == 3:
        return block[..., None]
    return np.moveaxis(block, 1, -1)


def _image(block: np.ndarray) -> np.ndarray:
    """(n, H, W, C) in [0, 1] → (n, H, W, 3) uint8 pictures: grey (the channel mean) unless C is 3."""
    picture = block if block.shape[-1] == 3 else np.repeat(block.mean(axis=-1, keepdims=True), 3, axis=-1)
    return np.round(np.clip(picture, 0.0, 1.0) * 255).astype(np.uint8)


def _write_sample_files(reader: AuditReader, out: Path, samples: np.ndarray, labels: np.ndarray) -> None:
    import h5py

    group = zarr.open_group(reader.layout.zarr_path, mode="r", zarr_format=3)
    relevance, logits, inputs = group["relevance"], group["logits"], group["input"]
    several = int(reader.layout_info["explanations_per_sample"]) > 1
    chunk = int(relevance.chunks[0])
    n = len(samples)
    # the inputs are stored preprocessed: one affine map of all of them onto [0, 255] for display
    low, high = np.inf, -np.inf
    for start in range(0, n, chunk):
        block = np.asarray(inputs.get_orthogonal_selection(samples[start : start + chunk]), dtype=np.float64)
        low, high = min(low, float(block.min())), max(high, float(block.max()))
    scale = 1.0 / (high - low) if high > low else 1.0

    def rows(array: Any, start: int) -> np.ndarray:
        block = np.asarray(array.get_orthogonal_selection(samples[start : start + chunk]))
        return block[:, 0] if several and array is relevance else block

    positions = np.arange(n, dtype=np.int64)
    first = rows(relevance, 0)[:1]
    shape = _attribution_layout(first).shape[1:]
    picture = _image(np.zeros((1, *_channels_last(first).shape[1:]))).shape[1:]

    def write_input(path: Path) -> None:
        with h5py.File(path, "w") as f:
            data = f.create_dataset("data", (n, *picture), dtype="uint8", chunks=(min(n, 256), *picture))
            for start in range(0, n, chunk):
                block = np.asarray(rows(inputs, start), dtype=np.float64)
                data[start : start + len(block)] = _image(_channels_last((block - low) * scale))
            f.create_dataset("label", data=labels)
            f.create_dataset("sample_index", data=samples)

    def write_attribution(path: Path) -> None:
        with h5py.File(path, "w") as f:
            data = f.create_dataset("attribution", (n, *shape), dtype="float32", chunks=(min(n, 256), *shape))
            pred = f.create_dataset("prediction", (n, logits.shape[1]), dtype="float32")
            for start in range(0, n, chunk):
                block = _attribution_layout(np.asarray(rows(relevance, start), dtype=np.float32))
                data[start : start + len(block)] = block
                pred[start : start + len(block)] = np.asarray(rows(logits, start), dtype=np.float32)
            f.create_dataset("label", data=labels)
            f.create_dataset("index", data=positions)
            f.create_dataset("sample_index", data=samples)

    _hidden_then_rename(out / INPUT, write_input)
    _hidden_then_rename(out / ATTRIBUTION, write_attribution)


def _write_analysis(audit: str, out: Path, position_of: dict[int, int]) -> list[int]:
    """The SpRAy results as ViRelAy's analysis file; the classes written ([] when SpRAy never ran)."""
    import h5py

    try:
        spray = read_spray(audit)
    except SprayStoreError:
        return []
    classes = spray.classes
    if not classes:
        return []
    samples = spray.samples
    ks = sorted({int(c[len("cluster_k") :]) for c in samples.columns if c.startswith("cluster_k")})
    ks = sorted(set(ks) | {int(k) for k in samples["k"].unique()})  # the chosen k may be outside k_min..k_max
    with_layout = bool(samples[["x", "y"]].notna().all().all()) if {"x", "y"} <= set(samples.columns) else False

    def write(path: Path) -> None:
        with h5py.File(path, "w") as f:
            for cls in classes:
                arrays = spray.arrays(cls)
                order = arrays["sample_index"].astype(np.int64)
                rows = samples[samples["class"] == cls].set_index("sample_index").loc[order]
                group = f.create_group(str(cls))
                group.create_dataset("index", data=np.array([position_of[int(i)] for i in order], dtype=np.int64))
                clusters = group.create_group("cluster")
                for k in ks:
                    column = f"cluster_k{k}"
                    if column in rows.columns:
                        labels = rows[column].to_numpy(np.int64)
                    elif (rows["k"] == k).all():
                        labels = rows["cluster"].to_numpy(np.int64)
                    else:  # the chosen k of another class only: not stored for this one
                        continue
                    clusters.create_dataset(clustering_name(k), data=labels)
                embedding = group.create_group("embedding")
                spectral = embedding.create_dataset("spectral", data=arrays["eigenvectors"].astype(np.float64))
                spectral.attrs["eigenvalue"] = arrays["eigenvalues"].astype(np.float64)
                if with_layout:
                    embedding.create_dataset("tsne", data=rows[["x", "y"]].to_numpy(np.float64))

    _hidden_then_rename(out / ANALYSIS, write)
    return classes


def _label_map(n_classes: int, names: list[str] | None, unknown: bool) -> list[dict[str, Any]]:
    entries = [
        {"index": i, "word_net_id": str(i), "name": names[i] if names and i < len(names) else f"class {i}"}
        for i in range(n_classes)
    ]
    if unknown:
        entries.append({"index": UNKNOWN_LABEL, "word_net_id": "unknown", "name": "unknown label"})
    return entries


def export_virelay(audit: str | os.PathLike[str], directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``directory/project.yaml`` and the files it names from the audit's committed samples and
    SpRAy results; ``virelay directory/project.yaml`` opens it. Returns what was written."""
    import yaml

    reader = open_audit(str(audit))
    if not reader.layout_info.get("keep_input"):
        raise VirelayExportError(
            f"{audit} was audited without its inputs (storage.keep_input: false); ViRelAy shows each "
            "heatmap over its input: rerun the audit with storage.keep_input: true"
        )
    summaries = reader.summaries
    if summaries.empty:
        raise VirelayExportError(f"{audit} has no committed samples to export")
    top = summaries[summaries["target_rank"] == 0].sort_values("sample_index")
    samples = top["sample_index"].to_numpy(np.int64)
    labels = top["label"].to_numpy(np.int64)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    _write_sample_files(reader, out, samples, labels)
    classes = _write_analysis(str(audit), out, {int(s): p for p, s in enumerate(samples)})

    n_classes = int(reader.layout_info["n_classes"])
    label_map = _label_map(n_classes, reader.class_names, bool((labels == UNKNOWN_LABEL).any()))
    _hidden_then_rename(out / LABEL_MAP, lambda p: p.write_text(json.dumps(label_map, indent=2), encoding="utf-8"))
    config = reader.config
    target = (config.get("target") or {}).get("kind", "predicted")
    project: dict[str, Any] = {
        "name": str(config.get("name") or Path(str(audit)).name),
        "model": str((config.get("model") or {}).get("builder") or (config.get("model") or {}).get("kind") or "model"),
        "label_map": LABEL_MAP,
        "dataset": {"name": str((config.get("dataset") or {}).get("kind") or "dataset"), "type": "hdf5", "path": INPUT},
        "attributions": {
            "attribution_method": f"lrp-{config.get('composite') or 'audit'}",
            "attribution_strategy": "true_label" if target == "label" else "predicted_label",
            "sources": [ATTRIBUTION],
        },
    }
    if classes:
        project["analyses"] = [{"analysis_method": "spray", "sources": [ANALYSIS]}]
    elif (out / ANALYSIS).exists():
        (out / ANALYSIS).unlink()  # a stale analysis of an earlier export would not match these samples
    text = yaml.safe_dump({"project": project}, sort_keys=False)
    _hidden_then_rename(out / PROJECT, lambda p: p.write_text(text, encoding="utf-8"))
    return {"project": str(out / PROJECT), "samples": len(samples), "spray_classes": classes}
