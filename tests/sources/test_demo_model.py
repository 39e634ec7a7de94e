"""The committed demo model loads from conf/demo.yaml and is accurate on the held-out digits."""

from __future__ import annotations

from pathlib import Path

import torch

from lrp_tasks.config import DigitsSpec, load_config
from lrp_tasks.sources import DigitsSource, load_model

ROOT = Path(__file__).resolve().parents[2]


def test_committed_weights_reach_97_percent_on_the_test_split() -> None:
    cfg = load_config(ROOT / "conf" / "demo.yaml", require_files=True)  # paths relative to conf/
    weights = ROOT / "conf" / cfg.model.weights
    assert weights.stat().st_size < 1_000_000
    model = load_model(cfg.model, root=ROOT / "conf").module
    test = DigitsSource(DigitsSpec(kind="digits", split="test"))
    batch = test.read(0, len(test))
    assert len(batch) == 360
    with torch.no_grad():
        accuracy = (model(batch.x).argmax(dim=1).numpy() == batch.labels).mean()
    assert accuracy >= 0.97, accuracy
