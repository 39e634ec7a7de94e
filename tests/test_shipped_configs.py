"""Every config shipped in conf/ runs, byte for byte as shipped.

Each file is copied unchanged into a project directory laid out like this repository
(``<project>/conf/x.yaml``), and the files it names are supplied where it says (relative to the
config file): committed weights are copied, weights the user supplies (ResNet-18) are random
ones of the right architecture, data folders are a few generated images. Then
``lrp-audit validate`` must accept it (every check of a run), and - integration - ``lrp-audit run``
from another working directory must explain every sample into the store the config names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.cli import main
from lrp_tasks.config import config_dir, load_config, resolve_paths
from lrp_tasks.sources.digits import digits_arrays
from lrp_tasks.store import open_audit

ROOT = Path(__file__).resolve().parents[1]
CONF_FILES = sorted((ROOT / "conf").glob("*.yaml"))


def _copy_committed_weights(project: Path, weights: Path) -> None:
    source = ROOT / weights.relative_to(project)
    assert source.is_file(), f"{source} should be committed"
    weights.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, weights)


def _random_resnet_weights(project: Path, weights: Path) -> None:
    from safetensors.torch import save_file

    from lrp_tasks.models.resnet import build_resnet

    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file(build_resnet(layers=[2, 2, 2, 2], num_classes=1000).state_dict(), str(weights))


def _digit_pngs(folder: Path, per_class: int = 2) -> None:
    images, labels = digits_arrays()
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(np.flatnonzero(labels == digit)[:per_class]):
            pixels = (images[index].reshape(8, 8) * 255 / 16).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / str(digit) / f"{i:03d}.png")


def _imagenet_jpegs(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for synset in ("n01440764", "n01443537"):
        (folder / synset).mkdir(parents=True, exist_ok=True)
        for i, size in enumerate([(300, 260), (240, 320)]):  # resize 256 + crop 224 both ways
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / synset / f"ILSVRC2012_val_{i:08d}.JPEG")


def _copy_committed_array(path: Path) -> None:
    source = ROOT / "data" / path.parent.name / path.name
    assert source.is_file(), f"{source} should be committed"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, path)


# What each shipped config needs besides itself: (weights supplier, data supplier or None).
SUPPLIERS: dict[str, tuple[Callable[[Path, Path], None], Callable[[Path], None] | None]] = {
    "demo.yaml": (_copy_committed_weights, None),
    "imagefolder_example.yaml": (_copy_committed_weights, _digit_pngs),
    "resnet_example.yaml": (_random_resnet_weights, _imagenet_jpegs),
    "planted.yaml": (_copy_committed_weights, _copy_committed_array),
    "resnet_digits.yaml": (_copy_committed_weights, _copy_committed_array),
    "vit_digits.yaml": (_copy_committed_weights, _copy_committed_array),
}


def supplied_project(tmp_path: Path, shipped: Path) -> Path:
    """``<tmp>/project/conf/<name>`` = the shipped file, with the files it names supplied."""
    project = tmp_path / "project"
    (project / "conf").mkdir(parents=True)
    path = project / "conf" / shipped.name
    shutil.copy(shipped, path)
    cfg = resolve_paths(load_config(path), config_dir(path))
    supply_weights, supply_data = SUPPLIERS[shipped.name]
    if cfg.model.kind == "builder" and cfg.model.weights:
        supply_weights(project, Path(cfg.model.weights))
    if supply_data is not None:
        supply_data(Path(cfg.dataset.path))
    return path


def lrp_audit(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ},
    )


def test_every_shipped_config_has_a_supplier() -> None:
    assert {p.name for p in CONF_FILES} == set(SUPPLIERS), "add a supplier for the new config in conf/"


@pytest.mark.parametrize("shipped", CONF_FILES, ids=[p.name for p in CONF_FILES])
def test_shipped_config_passes_every_check_of_a_run(
    shipped: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = supplied_project(tmp_path, shipped)
    assert path.read_bytes() == shipped.read_bytes()
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "valid audit" in out


@pytest.mark.integration
@pytest.mark.parametrize("shipped", CONF_FILES, ids=[p.name for p in CONF_FILES])
def test_shipped_config_runs_end_to_end(shipped: Path, tmp_path: Path) -> None:
    path = supplied_project(tmp_path, shipped)
    elsewhere = tmp_path / "elsewhere"  # not the project: paths must resolve against the config file
    elsewhere.mkdir()
    proc = lrp_audit("run", str(path), "--no-progress", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-5000:]
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    cfg = load_config(path)
    output = resolve_paths(cfg, config_dir(path)).output
    assert output.startswith(str(tmp_path / "project")) and not list(elsewhere.iterdir())
    audit = open_audit(output)
    frame = audit.summaries
    n_samples = result["samples"]
    assert result["samples_explained"] == n_samples > 0
    per_sample = cfg.target.k if cfg.target.kind == "top_k" else 1
    assert len(frame) == n_samples * per_sample
    assert sorted(set(frame["sample_index"])) == list(range(n_samples))
    assert audit.layerwise_names == list(cfg.storage.layerwise)
    if cfg.storage.crp is not None:
        assert audit.concepts.sizes["sample"] == n_samples
