"""The committed digits ViT (conf/vit_digits.yaml): the weights are what scripts/train_vit_digits.py
makes for the config's architecture, they load into torchvision's ViT structure, the model reads digits
(the accuracy the README quotes), and the faithfulness script compares the transformer composites."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lrp_tasks.config import load_config
from lrp_tasks.models.vit import build_torchvision_vit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "digits32" / "digits32_test.npz"
WEIGHTS = ROOT / "models" / "vit_digits.safetensors"


def _load(name: str):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "scripts"))


@pytest.fixture(scope="module")
def script():
    return _load("train_vit_digits")


def test_the_config_builds_the_trained_architecture(script) -> None:
    cfg = load_config(ROOT / "conf" / "vit_digits.yaml")
    assert cfg.model.builder == script.BUILDER == "lrp_tasks.models.vit:build_torchvision_vit"
    assert cfg.model.kwargs == script.ARCHITECTURE
    assert WEIGHTS.stat().st_size < 1_000_000
    build_torchvision_vit(**script.ARCHITECTURE).load_state_dict(load_file(str(WEIGHTS)), strict=True)


def test_the_model_reads_digits(script) -> None:
    model = build_torchvision_vit(**script.ARCHITECTURE)
    model.load_state_dict(load_file(str(WEIGHTS)))
    model.eval()
    with np.load(DATA) as archive:
        x, y = archive["x"], archive["y"]
    with torch.no_grad():
        predicted = model(script.as_input(x)).argmax(1).numpy()
    accuracy = float((predicted == y).mean())
    assert accuracy > 0.95
    with safe_open(str(WEIGHTS), "pt") as handle:
        info = json.loads(handle.metadata()["lrp_audit"])
    assert info["test_accuracy"] == pytest.approx(accuracy, abs=1e-4) and info["kwargs"] == script.ARCHITECTURE


def test_the_faithfulness_table_compares_the_transformer_composites() -> None:
    table = _load("faithfulness_table")
    config = table.table_config(ROOT / "conf" / "vit_digits.yaml")
    composites = table.composites_for(config)
    assert composites is table.TRANSFORMER_COMPOSITES and table.GRADIENT_X_INPUT in composites
    assert table.composites_for(table.table_config(ROOT / "conf" / "resnet_digits.yaml")) is table.COMPOSITES
    for composite in composites.values():
        table.parse_config({**config, "composite": composite, "output": "unused"})  # each valid in a config


def test_gradient_times_input_is_lrp0_with_the_softmax_rule_on_the_vit(tmp_path) -> None:
    """The table's gradient×input row for transformers is what autograd gives (float32 round-off)."""
    from lrp_tasks.audit.prepare import open_shard_explainer

    table = _load("faithfulness_table")
    config = table.table_config(ROOT / "conf" / "vit_digits.yaml")
    composite = table.TRANSFORMER_COMPOSITES[table.GRADIENT_X_INPUT]
    cfg = table.parse_config({**config, "composite": composite, "seed": "logit", "output": str(tmp_path / "a")})
    explainer = open_shard_explainer(cfg, device="cpu")
    assert table.check_gradient_times_input(explainer) < 1e-4
