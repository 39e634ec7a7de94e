"""lrp_tasks.models.training, the one training loop of scripts/train_*.py: it imports only torch and
numpy, and two runs in one process (one machine, its CPU kernels, one thread) give the same bytes;
nothing here holds across machines. (That a training script repeats to the byte on one machine and
gives a model that behaves like the committed one is
tests/analysis/test_planted.py::test_training_is_deterministic.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from lrp_tasks.models.training import TrainingSpec, accuracy, save_weights, train_classifier

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_torch_settings():
    """train_classifier sets process-wide torch state: put it back for the tests that follow."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    rng = torch.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    torch.set_rng_state(rng)


def test_the_module_imports_only_torch_and_numpy():
    code = (
        "import sys, lrp_tasks.models.training\n"
        "heavy = ('prefect', 'ray', 'zarr', 'pandas', 'safetensors', 'sklearn', 'xarray', 'pydantic')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def tiny() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def test_a_run_repeats_to_the_byte(tmp_path, restore_torch_settings):
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(50, 1, 4, 4, generator=g), torch.randint(0, 3, (50,), generator=g)
    spec = TrainingSpec(epochs=3, batch_size=16, lr=1e-2, seed=5)
    assert spec.steps(len(x)) == 3 * 4
    seen = []
    a = train_classifier(tiny, x, y, spec, on_epoch=lambda epoch, model, loss: seen.append((epoch, model.training)))
    assert seen == [(1, True), (2, True), (3, True)] and not a.training
    assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(123)  # the global generator's state before a run does not matter: it is seeded
    b = train_classifier(tiny, x, y, spec, on_epoch=lambda epoch, model, loss: accuracy(model, x, y))
    first = save_weights(a, tmp_path / "a" / "w.safetensors", builder="tests:tiny", spec=spec, info={"note": 1})
    second = save_weights(b, tmp_path / "b.safetensors", builder="tests:tiny", spec=spec, info={"note": 1})
    assert first.read_bytes() == second.read_bytes()
    with safe_open(str(first), "pt") as handle:
        metadata = handle.metadata()
    assert list(metadata) == ["lrp_audit"]
    facts = json.loads(metadata["lrp_audit"])
    assert list(facts) == sorted(facts)
    assert facts == {"builder": "tests:tiny", "epochs": 3, "seed": 5, "torch": torch.__version__, "note": 1}
    other = train_classifier(tiny, x, y, TrainingSpec(epochs=3, batch_size=16, lr=1e-2, seed=6))
    assert not torch.equal(other[1].weight, a[1].weight)


def test_inputs_and_labels_must_pair_up():
    with pytest.raises(ValueError, match="5 inputs but 4 labels"):
        train_classifier(tiny, torch.zeros(5, 16), torch.zeros(4, dtype=torch.int64), TrainingSpec(epochs=1))
