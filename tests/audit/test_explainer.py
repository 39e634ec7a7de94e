"""The shard task end to end on the demo digits CNN: every storage option and target kind is kept.

Each test builds a ShardExplainer from a small config, explains one shard (two batches), reads the
audit back and compares with direct engine calls on the same batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lrp_tasks.audit.explainer import ShardExplainer
from lrp_tasks.audit.prepare import open_shard_explainer
from lrp_tasks.config import ConfigError, parse_config
from lrp_tasks.engine import CRP, IndexedFeatures, TopK, TopNFeatures
from lrp_tasks.store import open_audit
from tests.digits_audit import digits_audit_config

SHARD = 48  # samples of shard 0
BATCH = 32  # two batches per shard: 32 + 16


def explainer(tmp_path: Path, **overrides: Any) -> ShardExplainer:
    settings: dict[str, Any] = {"shard_size": SHARD, "batch_size": BATCH, "storage": {"keep_input": False}}
    cfg = digits_audit_config(tmp_path / "audit", "shard-test", **{**settings, **overrides})
    return open_shard_explainer(parse_config(cfg), device="cpu")


def batches(ex: ShardExplainer) -> list[Any]:
    return [ex.dataset.read(lo, min(lo + BATCH, SHARD)) for lo in range(0, SHARD, BATCH)]


def test_layerwise_relevances_are_kept_as_the_engine_gives_them(tmp_path) -> None:
    ex = explainer(tmp_path, storage={"keep_input": False, "layerwise": ["conv2", "fc1"]})
    assert ex.spec.layerwise == {"conv2": (32, 8, 8), "fc1": (64,)}
    outcome = ex.explain_shard(0, 0, SHARD)
    assert outcome.explained and outcome.samples == SHARD

    expected: dict[str, list[np.ndarray]] = {"conv2": [], "fc1": [], "input": []}
    for batch in batches(ex):
        expl = ex.analyzer.analyze(batch.x, None, layerwise_relevances=True, seed="one-hot")
        by_layer = ex.analyzer.relevance_by_layer(expl)
        for name in ("conv2", "fc1"):
            expected[name].append(by_layer[name].numpy())
        expected["input"].append(expl.val.numpy())

    audit = open_audit(str(tmp_path / "audit"))
    assert audit.layerwise_names == ["conv2", "fc1"]
    conv2 = audit.layerwise("conv2")
    assert conv2.dims == ("sample", "channel", "height", "width")
    assert conv2["sample"].values.tolist() == list(range(SHARD))
    np.testing.assert_array_equal(conv2.values, np.concatenate(expected["conv2"]))
    fc1 = audit.layerwise("fc1")
    assert fc1.dims == ("sample", "feature") and fc1.dtype == np.float32
    np.testing.assert_array_equal(fc1.values, np.concatenate(expected["fc1"]))
    np.testing.assert_array_equal(audit.relevance.values, np.concatenate(expected["input"]))
    # Relevance is (approximately) conserved through the layers: each layer's sum is close to the seed 1.
    np.testing.assert_allclose(fc1.values.sum(axis=1), 1.0, atol=0.05)

    again = ex.explain_shard(0, 0, SHARD)  # committed: skipped
    assert not again.explained


def test_unknown_layer_names_are_refused_with_the_valid_ones(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"storage.layerwise\[1\]: the model has no layer named 'conv9'") as e:
        explainer(tmp_path, storage={"layerwise": ["conv1", "conv9"]})
    assert "'conv1', " in str(e.value) and "'fc2'" in str(e.value)  # the valid names are listed
    with pytest.raises(ConfigError, match=r"storage.crp.layer: the model has no layer named 'conv9'"):
        explainer(tmp_path, storage={"crp": {"layer": "conv9", "features": 2}})
    assert not (tmp_path / "audit").exists()  # refused before the store is created


def test_crp_top_n_keeps_the_channel_and_relevance_of_each_concept(tmp_path) -> None:
    ex = explainer(tmp_path, storage={"keep_input": False, "crp": {"layer": "conv2", "features": 3}})
    assert (ex.spec.n_concepts, ex.spec.concept_ids) == (3, None)
    ex.explain_shard(0, 0, SHARD)

    crp = CRP(ex.analyzer, "conv2", TopNFeatures(3))
    maps, channels, relevances = [], [], []
    for batch in batches(ex):
        expl = crp.analyze(batch.x, None, seed="one-hot")
        maps.append(expl.val.numpy())
        channels.append(expl.extras["features"].numpy())
        relevances.append(expl.extras["concept_relevances"].numpy())

    audit = open_audit(str(tmp_path / "audit"))
    got_channels = audit.concept_channels.values
    got_relevance = audit.concept_relevance.values
    assert got_channels.shape == (SHARD, 3) and got_channels.dtype == np.int64
    assert got_relevance.shape == (SHARD, 3) and got_relevance.dtype == np.float32
    assert audit.concepts.shape == (SHARD, 3, 1, 8, 8)
    np.testing.assert_array_equal(got_channels, np.concatenate(channels))
    np.testing.assert_array_equal(got_relevance, np.concatenate(relevances))
    np.testing.assert_array_equal(audit.concepts.values, np.concatenate(maps))
    assert (np.diff(got_relevance, axis=1) <= 0).all()  # top-n: most relevant concept first
    assert ((got_channels >= 0) & (got_channels < 32)).all()
    assert len({tuple(row) for row in got_channels}) > 1  # the channels do differ between samples
    assert audit.dataset["concept_ids"].values.tolist() == [-1, -1, -1]  # no fixed channels
    # Each concept's relevance at the layer is the relevance of that channel in the plain LRP pass.
    full = np.concatenate(
        [
            ex.analyzer.relevance_by_layer(ex.analyzer.analyze(b.x, None, layerwise_relevances=True))["conv2"].numpy()
            for b in batches(ex)
        ]
    )
    per_channel = full.reshape(SHARD, 32, -1).sum(axis=2)
    np.testing.assert_allclose(
        got_relevance, np.take_along_axis(per_channel, got_channels, axis=1), rtol=1e-5, atol=1e-7
    )


def test_crp_indexed_features_are_the_same_channels_for_every_sample(tmp_path) -> None:
    ex = explainer(tmp_path, storage={"keep_input": False, "crp": {"layer": "conv2", "features": [5, 1]}})
    ex.explain_shard(0, 0, SHARD)
    audit = open_audit(str(tmp_path / "audit"))
    assert audit.dataset["concept_ids"].values.tolist() == [5, 1]
    assert (audit.concept_channels.values == [5, 1]).all()
    expl = CRP(ex.analyzer, "conv2", IndexedFeatures(5, 1)).analyze(batches(ex)[0].x, None)
    np.testing.assert_array_equal(audit.concept_relevance.values[:BATCH], expl.extras["concept_relevances"].numpy())


@pytest.mark.parametrize(
    ("crp", "message"),
    [
        ({"layer": "conv2", "features": 40}, "top 40 features asked for, but layer 'conv2' has 32 channels"),
        ({"layer": "conv2", "features": [3, 32]}, r"feature indices \[32\] out of range"),
    ],
)
def test_crp_features_that_do_not_fit_the_layer_are_refused(tmp_path, crp, message) -> None:
    with pytest.raises(ConfigError, match=message):
        explainer(tmp_path, storage={"crp": crp})


def test_label_target_explains_the_true_class(tmp_path) -> None:
    ex = explainer(tmp_path, target="label")
    ex.explain_shard(0, 0, SHARD)
    audit = open_audit(str(tmp_path / "audit"))
    labels = np.concatenate([b.labels for b in batches(ex)])
    np.testing.assert_array_equal(audit.dataset["target"].values, labels)
    frame = audit.summaries
    assert (frame["target"] == frame["label"]).all() and (frame["target_rank"] == 0).all()
    expl = ex.analyzer.analyze(batches(ex)[0].x, torch.as_tensor(labels[:BATCH]))
    np.testing.assert_array_equal(audit.relevance.values[:BATCH], expl.val.numpy())


def test_class_target_explains_one_class_for_every_sample(tmp_path) -> None:
    ex = explainer(tmp_path, target={"kind": "class", "index": 3})
    ex.explain_shard(0, 0, SHARD)
    audit = open_audit(str(tmp_path / "audit"))
    assert (audit.dataset["target"].values == 3).all()
    assert (audit.summaries["target"] == 3).all()
    expl = ex.analyzer.analyze(batches(ex)[1].x, 3)
    np.testing.assert_array_equal(audit.relevance.values[BATCH:], expl.val.numpy())


def test_targets_outside_the_model_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"target\.index: class 10 does not exist: the model has 10 classes"):
        explainer(tmp_path, target={"kind": "class", "index": 10})
    with pytest.raises(ConfigError, match=r"target\.k: k=11 exceeds the model's 10 classes"):
        explainer(tmp_path, target={"kind": "top_k", "k": 11})


def test_top_k_target_keeps_k_explanations_per_sample(tmp_path) -> None:
    k = 3
    ex = explainer(tmp_path, target={"kind": "top_k", "k": k}, storage={"keep_input": False, "layerwise": ["fc1"]})
    assert ex.spec.k == k and ex.spec.layerwise_row_shape("fc1") == (k, 64)
    ex.explain_shard(0, 0, SHARD)
    audit = open_audit(str(tmp_path / "audit"))

    expls = [ex.analyzer.analyze(b.x, TopK(k), layerwise_relevances=True) for b in batches(ex)]
    assert audit.relevance.shape == (SHARD, k, 1, 8, 8)
    assert audit.relevance.dims == ("sample", "explanation", "channel", "height", "width")
    np.testing.assert_array_equal(audit.relevance.values, np.concatenate([e.val.numpy() for e in expls]))
    targets = np.concatenate([e.output_selection.numpy() for e in expls])
    assert targets.shape == (SHARD, k)
    np.testing.assert_array_equal(audit.dataset["target"].values, targets)
    logits = np.concatenate([e.output.numpy() for e in expls])
    np.testing.assert_array_equal(targets, np.argsort(-logits, axis=1, kind="stable")[:, :k])

    fc1 = audit.layerwise("fc1")
    assert fc1.dims == ("sample", "explanation", "feature") and fc1.shape == (SHARD, k, 64)
    np.testing.assert_array_equal(
        fc1.values, np.concatenate([ex.analyzer.relevance_by_layer(e)["fc1"].numpy() for e in expls])
    )

    frame = audit.summaries
    assert len(frame) == SHARD * k
    assert frame["sample_index"].tolist() == np.repeat(np.arange(SHARD), k).tolist()
    assert frame["target_rank"].tolist() == list(range(k)) * SHARD
    np.testing.assert_array_equal(frame["target"].to_numpy().reshape(SHARD, k), targets)
    assert (frame.loc[frame["target_rank"] == 0, "target"] == frame.loc[frame["target_rank"] == 0, "predicted"]).all()
    sums = audit.relevance.values.reshape(SHARD * k, -1).astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(frame["relevance_sum"], sums, rtol=1e-6, atol=1e-9)


def test_samples_with_nan_are_refused_by_id_and_nothing_is_committed(tmp_path, monkeypatch) -> None:
    from lrp_tasks.audit.explainer import SampleError

    ex = explainer(tmp_path)
    real_read = ex.dataset.read

    def read_with_nan(start: int, stop: int):
        batch = real_read(start, stop)
        batch.x[1, 0, 2, 3] = float("nan")
        return batch

    second = real_read(0, BATCH).ids[1]  # the id of the poisoned sample (a digits index)
    monkeypatch.setattr(ex.dataset, "read", read_with_nan)
    with pytest.raises(SampleError, match=rf"1 sample\(s\) contain NaN or inf.*ids \['{second}'\]"):
        ex.explain_shard(0, 0, SHARD)
    assert open_audit(str(tmp_path / "audit")).committed_shards == set()


# Determinism, stated exactly: in one process (one machine, its kernels and thread count) the same
# samples through the same batches give bit-identical relevance; another batching reorders float32
# sums inside the kernels, so results agree to round-off only. The tolerance used across batchings
# (here and in the flow tests):
BATCHING_RTOL = 1e-5
"""|a - b| <= BATCHING_RTOL × (the sample's largest |relevance|), elementwise: ~100 float32 ulps of
the sample's scale; measured differences are 3e-7 to 7e-7 of it."""


def assert_same_up_to_batching(a: np.ndarray, b: np.ndarray) -> None:
    scale = np.abs(a).reshape(len(a), -1).max(axis=1).reshape(-1, *([1] * (a.ndim - 1)))
    assert np.all(np.abs(a - b) <= BATCHING_RTOL * scale), float(np.max(np.abs(a - b) / scale))


def test_same_batches_are_bit_identical_other_batchings_agree_to_round_off(tmp_path) -> None:
    ex = explainer(tmp_path)

    def relevance(batch_size: int) -> np.ndarray:
        parts = []
        for lo in range(0, SHARD, batch_size):
            expl, _ = ex.explain_batch(ex.dataset.read(lo, min(lo + batch_size, SHARD)))
            parts.append(expl.val.numpy())
        return np.concatenate(parts)

    reference = relevance(BATCH)
    np.testing.assert_array_equal(relevance(BATCH), reference)  # same batches: bit for bit
    for other in (1, 7, SHARD):
        assert_same_up_to_batching(relevance(other), reference)


@pytest.mark.parametrize("kind", ["builder", "export"])
def test_every_documented_model_kind_is_explained_end_to_end(tmp_path, kind) -> None:
    """builder and torch.export programs give the same audit (the export is lowered onto layers
    named after its weights, so layerwise names and CRP layers are the original's)."""
    from lrp_tasks.models.digits import build_digits_cnn
    from lrp_tasks.sources import load_model

    reference = explainer(tmp_path / "ref", storage={"keep_input": False, "layerwise": ["conv2"]})
    model = {}
    if kind == "export":
        module = load_model(reference.cfg.model).module
        assert isinstance(module, type(build_digits_cnn()))
        path = tmp_path / "digits.pt2"
        torch.export.save(torch.export.export(module.eval(), (torch.rand(1, 1, 8, 8),)), str(path))
        model = {"model": {"kind": "export", "path": str(path)}}
    storage = {"keep_input": False, "layerwise": ["conv2"], "crp": {"layer": "conv2", "features": 2}}
    ex = explainer(tmp_path / kind, storage=storage, **model)
    assert ex.explain_shard(0, 0, SHARD).explained
    audit = open_audit(str(tmp_path / kind / "audit"))
    batch = reference.dataset.read(0, BATCH)
    expected = reference.analyzer.analyze(batch.x, None).val.numpy()
    np.testing.assert_allclose(audit.relevance.values[:BATCH], expected, rtol=1e-5, atol=1e-6)
    assert audit.layerwise("conv2").shape[1:] == (32, 8, 8)


def test_a_resnet_keeps_container_layerwise_relevance_and_crp(tmp_path) -> None:
    """The resnet example's storage section (a stage by container name, CRP on a graph model)."""
    model = {
        "kind": "builder",
        "builder": "lrp_tasks.models.resnet:build_resnet",
        "kwargs": {"layers": [1, 1], "num_classes": 10, "in_channels": 1, "width": 8, "stem": "small"},
    }
    storage = {"keep_input": False, "layerwise": ["layer2"], "crp": {"layer": "layer2", "features": [0, 1, 2]}}
    ex = explainer(tmp_path, model=model, storage=storage)
    assert ex.analyzer.plan.kind == "graph"
    assert ex.explain_shard(0, 0, SHARD).explained
    audit = open_audit(str(tmp_path / "audit"))
    assert audit.layerwise("layer2").shape[0] == SHARD
    batch = ex.dataset.read(0, BATCH)
    _, concepts = ex.explain_batch(batch)
    assert concepts is not None and concepts.val.shape[:2] == (BATCH, 3)
