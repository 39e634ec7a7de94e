"""Efficient MPRT: the complexity is numpy's histogram entropy, the randomised model is a seeded copy,
and on the trained demo CNN LRP explanations become more complex when the weights are randomised."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrp_tasks.audit.composite import build_composite
from lrp_tasks.audit.prepare import open_shard_explainer, resolve_audit
from lrp_tasks.config import parse_config
from lrp_tasks.engine import LRP, EpsilonPlusFlat, canonize
from lrp_tasks.metrics import discrete_entropy, efficient_mprt, randomize_parameters
from lrp_tasks.sources import load_model
from lrp_tasks.store import open_audit
from tests.digits_audit import digits_audit_config
from tests.metrics.test_perturbation import digits_inputs, digits_model


def reference_entropy(row: np.ndarray, n_bins: int) -> float:
    """Quantus's discrete_entropy: scipy.stats.entropy of numpy.histogram counts, written out."""
    counts, _ = np.histogram(row, bins=n_bins)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@pytest.mark.parametrize("n_bins", [2, 10, 100])
def test_discrete_entropy_is_the_entropy_of_numpys_histogram(n_bins) -> None:
    g = np.random.default_rng(0)
    maps = np.concatenate(
        [
            g.normal(size=(5, 64)),
            g.integers(0, 3, size=(2, 64)).astype(float),  # values on bin edges
            np.zeros((1, 64)),  # constant: one bin
            np.linspace(-1, 1, 64)[None] ** 3,
        ]
    )
    got = discrete_entropy(maps, n_bins)
    want = [reference_entropy(row, n_bins) for row in maps]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert got[7] == 0.0
    np.testing.assert_allclose(discrete_entropy(torch.from_numpy(maps).reshape(9, 1, 8, 8), n_bins), want)


def test_randomized_copy_is_seeded_and_leaves_the_model_and_global_rng_alone() -> None:
    model = digits_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = randomize_parameters(model, seed=5)
    assert torch.equal(torch.rand(3), expected_next)  # global random state untouched
    b = randomize_parameters(model, seed=5)
    c = randomize_parameters(model, seed=6)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
    assert torch.equal(a.conv1.weight, b.conv1.weight) and not torch.equal(a.conv1.weight, c.conv1.weight)
    assert not torch.equal(a.fc2.weight, model.fc2.weight)


def test_scores_are_the_relative_rise_of_complexity_between_the_two_models() -> None:
    model = digits_model()
    x, _ = digits_inputs(32)
    target = model(x).argmax(1)
    maps = {}

    def explain(m, inputs, classes):
        maps[len(maps)] = LRP(canonize(m), EpsilonPlusFlat()).analyze(inputs, classes).val
        return maps[len(maps) - 1]

    result = efficient_mprt(explain, model, randomize_parameters(model, 0), x, target, np.arange(32), 10, 0)
    assert not torch.allclose(maps[0], maps[1])  # the randomised model explains differently
    np.testing.assert_allclose(result.complexity_trained, discrete_entropy(maps[0], 10))
    np.testing.assert_allclose(result.complexity_randomized, discrete_entropy(maps[1], 10))
    np.testing.assert_allclose(
        result.scores, (result.complexity_randomized - result.complexity_trained) / result.complexity_trained
    )
    record = result.summary()
    assert record["samples"] == 32 and record["scores"] == pytest.approx(result.scores.tolist())
    assert record["share_complexity_rises"] == pytest.approx(float((result.scores > 0).mean()))


def test_audit_level_check_is_recorded_in_the_store_attributes(tmp_path) -> None:
    from lrp_tasks.audit.sanity import run_efficient_mprt

    overrides = {"shard_size": 32, "metrics": {"efficient_mprt": {"samples": 20, "seed": 3, "n_bins": 50}}}
    cfg = resolve_audit(parse_config(digits_audit_config(tmp_path / "audit", "mprt", **overrides)))
    ex = open_shard_explainer(cfg, device="cpu")
    ex.explain_shard(0, 0, 32)
    ex.explain_shard(2, 64, 96)
    record = run_efficient_mprt(cfg)
    attrs = open_audit(str(tmp_path / "audit")).attrs
    assert attrs["sanity_checks"]["efficient_mprt"] == record
    assert record["samples"] == 20 and record["n_bins"] == 50 and record["seed"] == 3
    picked = record["sample_index"]
    assert len(set(picked)) == 20 and all(i < 32 or 64 <= i < 96 for i in picked)  # committed samples only
    # The same numbers as a direct call on the same samples and the audit's own targets.
    x = torch.cat([ex.dataset.read(i, i + 1).x for i in picked])
    target = torch.as_tensor(open_audit(str(tmp_path / "audit")).dataset["target"].sel(sample=picked).values)

    def explain(m, inputs, classes):
        return LRP(m, build_composite(cfg.composite)).analyze(inputs, classes).val

    raw = load_model(cfg.model).module
    direct = efficient_mprt(explain, canonize(raw), canonize(randomize_parameters(raw, 3)), x, target, picked, 50, 3)
    np.testing.assert_allclose(record["scores"], direct.scores, rtol=1e-6)
    assert run_efficient_mprt(cfg) == record  # deterministic: a rerun records the same


def test_the_randomised_model_raises_no_conservation_warning(tmp_path) -> None:
    import warnings

    from lrp_tasks.audit.sanity import run_efficient_mprt
    from lrp_tasks.engine import ConservationWarning, strip_softmax

    overrides = {"shard_size": 32, "metrics": {"efficient_mprt": {"samples": 20, "seed": 3}}}
    cfg = resolve_audit(parse_config(digits_audit_config(tmp_path / "audit", "mprt", **overrides)))
    ex = open_shard_explainer(cfg, device="cpu")
    ex.explain_shard(0, 0, 32)

    def conservation_warnings(run) -> tuple[object, list[str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = run()
        return out, [str(w.message) for w in caught if issubclass(w.category, ConservationWarning)]

    record, seen = conservation_warnings(lambda: run_efficient_mprt(cfg))
    picked = record["sample_index"]
    x = torch.cat([ex.dataset.read(i, i + 1).x for i in picked])
    target = torch.as_tensor(open_audit(str(tmp_path / "audit")).dataset["target"].sel(sample=picked).values)
    raw = load_model(cfg.model).module

    def explain(model):
        return lambda: LRP(canonize(strip_softmax(model)), build_composite(cfg.composite)).analyze(x, target)

    _, randomised = conservation_warnings(explain(randomize_parameters(raw, 3)))
    _, trained = conservation_warnings(explain(raw))
    assert randomised  # the randomised model does break conservation...
    assert seen == trained  # ...but eMPRT warns only what the trained model warns (as the audit did)
