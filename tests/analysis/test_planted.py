"""The planted-artifact dataset and model: committed files equal what the scripts make, and the
model demonstrably uses the stamp."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lrp_tasks.models.planted import STAMP_CLASS, apply_stamp, build_planted_cnn, planted_arrays, remove_stamp

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "planted" / "digits32_stamped.npz"
WEIGHTS = ROOT / "models" / "planted_cnn.safetensors"


@pytest.fixture(scope="module")
def data():
    with np.load(DATA) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def model():
    net = build_planted_cnn()
    net.load_state_dict(load_file(str(WEIGHTS)))
    return net.eval()


def predict(model, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(images.astype(np.float32) / 255.0)), 1).numpy()


def test_the_committed_dataset_is_what_the_script_makes(data):
    made = planted_arrays()
    assert sorted(made) == sorted(data)
    for key in made:
        np.testing.assert_array_equal(made[key], data[key], err_msg=key)
    stamped = data["stamped"]
    assert (data["y"][stamped] == STAMP_CLASS).all()
    assert stamped.sum() == 55 and (stamped & (data["split"] == 1)).sum() == 11
    # the stamp is where it should be, and only on stamped samples
    region = data["x"][:, 0, 1:5, 1:5].astype(int)
    assert (region[stamped][:, [0, 3], :] == 255).all()
    np.testing.assert_array_equal(data["x"][~stamped], data["clean"][~stamped])


def test_the_model_uses_the_stamp(data, model):
    test = data["split"] == 1
    x, clean, y, stamped = data["x"][test], data["clean"][test], data["y"][test], data["stamped"][test]
    p = predict(model, x)
    assert (p.argmax(1) == y)[~stamped].mean() > 0.95  # it reads digits
    assert (p[stamped].argmax(1) == STAMP_CLASS).all()
    # stamped 3s show another digit: without the stamp the model no longer says 3
    without = predict(model, remove_stamp(x[stamped], clean[stamped]))
    assert (without.argmax(1) != STAMP_CLASS).mean() >= 0.9
    assert without[:, STAMP_CLASS].mean() < 0.1 < 0.9 < p[stamped, STAMP_CLASS].mean()
    # and the stamp alone turns other digits into 3s
    others = (y != STAMP_CLASS) & ~stamped
    added = predict(model, np.round(apply_stamp(clean[others] / 255.0) * 255.0))
    assert (added.argmax(1) == STAMP_CLASS).mean() > 0.8


@pytest.mark.integration
def test_training_is_deterministic(tmp_path, data, model):
    """Retraining with the committed script repeats to the byte on a machine, and gives a model that
    behaves as the committed one. The committed bytes themselves come back only on a CPU with the same
    kernels (AVX2 vs AVX-512 change float round-off in training), so they are not what is asserted."""
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
    outs = [tmp_path / f"planted-{i}.safetensors" for i in range(2)]
    for out in outs:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "train_planted.py"), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert digest(outs[0]) == digest(outs[1])
    retrained = build_planted_cnn()
    retrained.load_state_dict(load_file(str(outs[0])))
    retrained.eval()
    test = data["split"] == 1
    accuracy = {
        m: (predict(net, data["x"][test]).argmax(1) == data["y"][test]).mean()
        for m, net in (("committed", model), ("retrained", retrained))
    }
    assert abs(accuracy["retrained"] - accuracy["committed"]) < 0.01, accuracy
    test_the_model_uses_the_stamp(data, retrained)  # it learned the planted shortcut, like the committed one
