"""A small synthetic audit whose maps hold known strategies, written through the real store.

Class c of sample i is ``i % 3`` (one-hot logits). In every class, samples with ``(i // 3) % 4 == 0``
(a quarter) have their relevance on a 3×3 corner patch; the others on a jittered central blob. Maps
have two channels (SpRAy sums them; ``channels=1`` for one) of 16×16 and a little noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrp_tasks.audit.summaries import summarize
from lrp_tasks.store import AuditSpec, AuditStore, ShardResult

N_CLASSES = 3
SHAPE = (2, 16, 16)


def is_corner(index: np.ndarray) -> np.ndarray:
    return (index // N_CLASSES) % 4 == 0


def maps_for(index: np.ndarray, seed: int = 0, channels: int = SHAPE[0]) -> np.ndarray:
    shape = (channels, *SHAPE[1:])
    out = np.empty((len(index), *shape), dtype=np.float32)
    for row, i in enumerate(index):
        rng = np.random.default_rng([seed, int(i)])
        m = rng.normal(0.0, 0.05, shape)
        if is_corner(np.asarray(i)):
            m[:, 1:4, 1:4] += 1.0
        else:
            cy, cx = 8 + rng.integers(-2, 3), 8 + rng.integers(-2, 3)
            m[:, cy - 3 : cy + 3, cx - 3 : cx + 3] += 0.5
        out[row] = m
    return out


def input_for(index: np.ndarray, channels: int = SHAPE[0]) -> np.ndarray:
    """The stored input of each sample: its map's first channel in every channel, plus its index."""
    x = np.repeat(maps_for(index, channels=channels)[:, :1], channels, axis=1)
    return (x + index[:, None, None, None]).astype(np.float32)


def write_audit(
    path: Path,
    n_samples: int = 240,
    shard_size: int = 40,
    shards: list[int] | None = None,
    keep_input: bool = False,
    channels: int = SHAPE[0],
) -> AuditStore:
    """An audit of ``n_samples`` synthetic maps; ``shards`` commits only those (default: all);
    ``keep_input`` also stores an input per sample (its map's first channel plus the sample index)."""
    spec = AuditSpec(
        n_samples=n_samples,
        sample_shape=(channels, *SHAPE[1:]),
        n_classes=N_CLASSES,
        shard_size=shard_size,
        config={"name": "spray-test", "ray": {"workers": 1, "cpus_per_worker": 1}},
        weights_digest="sha256:none",
        keep_input=keep_input,
    )
    store = AuditStore.create_or_open(str(path), spec, mode="resume")
    for sid, start, stop in store.plan:
        if shards is not None and sid not in shards:
            continue
        index = np.arange(start, stop)
        relevance = maps_for(index, channels=channels)
        logits = np.zeros((len(index), N_CLASSES), dtype=np.float32)
        logits[np.arange(len(index)), index % N_CLASSES] = 5.0
        target = index % N_CLASSES
        frame = summarize(
            relevance,
            logits,
            target,
            np.ones(len(index)),
            labels=(index + 1) % N_CLASSES,  # labels differ from predictions: --by label groups differently
            sample_index=index,
            sample_ids=None,
            dataset="synthetic",
            shard_id=sid,
            audit_id=store.audit_id,
        )
        store.write_shard(
            ShardResult(
                shard_id=sid,
                start=start,
                stop=stop,
                relevance=relevance,
                logits=logits,
                target=target,
                summaries=frame,
                input=input_for(index, channels) if keep_input else None,
            )
        )
    return store
