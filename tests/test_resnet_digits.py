"""The committed digits ResNet (conf/resnet_digits.yaml): data and weights are what
scripts/train_resnet_digits.py makes, the model loads into the config's architecture, and it reads
digits (the accuracy the README quotes)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lrp_tasks.config import load_config
from lrp_tasks.models.resnet import build_resnet

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "digits32" / "digits32_test.npz"
WEIGHTS = ROOT / "models" / "resnet_digits.safetensors"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_resnet_digits", ROOT / "scripts" / "train_resnet_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data():
    with np.load(DATA) as archive:
        return {key: archive[key] for key in archive.files}


def test_the_committed_data_is_the_upscaled_test_split(script, data):
    x, y = script.split_arrays("test")
    assert sorted(data) == ["x", "y"]
    np.testing.assert_array_equal(data["x"], x)
    np.testing.assert_array_equal(data["y"], y)
    assert data["x"].shape == (360, 1, 32, 32) and data["x"].dtype == np.uint8
    # nearest-neighbour upscaling: every 4×4 block is one value
    blocks = data["x"][:, 0].reshape(360, 8, 4, 8, 4)
    assert (blocks == blocks[:, :, :1, :, :1]).all()


def test_the_config_builds_the_trained_architecture(script):
    cfg = load_config(ROOT / "conf" / "resnet_digits.yaml")
    assert cfg.model.builder == "lrp_tasks.models.resnet:build_resnet"
    assert cfg.model.kwargs == script.ARCHITECTURE
    assert WEIGHTS.stat().st_size < 2_000_000
    model = build_resnet(**script.ARCHITECTURE)
    model.load_state_dict(load_file(str(WEIGHTS)), strict=True)


def test_the_model_reads_digits(script, data):
    model = build_resnet(**script.ARCHITECTURE)
    model.load_state_dict(load_file(str(WEIGHTS)))
    model.eval()
    with torch.no_grad():
        predicted = model(script.as_input(data["x"])).argmax(1).numpy()
    accuracy = float((predicted == data["y"]).mean())
    assert accuracy > 0.98
    with safe_open(str(WEIGHTS), "pt") as handle:
        info = json.loads(handle.metadata()["lrp_audit"])
    assert info["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)


@pytest.mark.parametrize("name", ["demo.yaml", "resnet_digits.yaml", "vit_digits.yaml"])
def test_the_faithfulness_table_reads_the_config_like_a_run(name):
    spec = importlib.util.spec_from_file_location("faithfulness_table", ROOT / "scripts" / "faithfulness_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.table_config(ROOT / "conf" / name)
    assert Path(config["model"]["weights"]).is_file()
    if config["dataset"]["kind"] == "array":
        assert Path(config["dataset"]["path"]).is_file()
    assert config["metrics"]["region_perturbation"] and "efficient_mprt" not in config["metrics"]
    module.parse_config({**config, "output": "unused"})  # valid as the script runs it
