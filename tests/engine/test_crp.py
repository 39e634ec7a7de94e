"""CRP: concept-conditional maps add up to the plain LRP map and match a hand-masked pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_tasks.engine import CRP, LRP, EpsilonPlus, IndexedFeatures, TopNFeatures, canonize

from .models import relu_cnn, seed_cnn


def test_all_concepts_sum_to_the_lrp_map():
    torch.manual_seed(0)
    model = relu_cnn().double()
    analyzer = LRP(model, EpsilonPlus())
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    crp = CRP(analyzer, 3, IndexedFeatures(*range(6)))  # the second conv has 6 channels
    expl = crp(x)
    assert expl.val.shape == (3, 6, 1, 8, 8)
    torch.testing.assert_close(expl.val.sum(dim=1), analyzer(x).val)
    # without biases (nothing absorbs relevance) a concept's input map carries exactly the
    # relevance the concept had at its layer
    bias_free = CRP(LRP(relu_cnn(bias=False).double(), EpsilonPlus()), 3, IndexedFeatures(*range(6)))(x)
    torch.testing.assert_close(bias_free.val.flatten(2).sum(2), bias_free.extras["concept_relevances"])


def test_top_n_features_ranked_by_signed_relevance():
    torch.manual_seed(1)
    analyzer = LRP(canonize(seed_cnn()), EpsilonPlus())
    x = torch.randn(2, 3, 32, 32)
    expl = CRP(analyzer, "0.8", TopNFeatures(3))(x)
    allc = expl.extras["all_concept_relevances"]
    assert expl.extras["features"].shape == (2, 3)
    torch.testing.assert_close(expl.extras["concept_relevances"], allc.topk(3, dim=1).values)
    assert expl.extras["layer"] == "0.8"


def test_dense_layer_concepts_are_neurons_and_bad_arguments_refused():
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    analyzer = LRP(model)
    expl = CRP(analyzer, 0, IndexedFeatures(1, 2))(torch.randn(2, 5))
    assert expl.val.shape == (2, 2, 5)
    with pytest.raises(ValueError, match="out of range"):
        CRP(analyzer, 0, IndexedFeatures(9))(torch.randn(2, 5))
    with pytest.raises(ValueError, match="no layer named"):
        CRP(analyzer, "nope", TopNFeatures(1))


def resnet64(block=None):
    from .resnets import BasicBlock, small_resnet

    return canonize(small_resnet(block or BasicBlock)).double()


@pytest.mark.parametrize("layer", ["layer2", "layer4"])
def test_concepts_of_every_channel_of_a_resnet_stage_sum_to_the_lrp_map(layer):
    torch.manual_seed(2)
    model = resnet64()
    analyzer = LRP(model, EpsilonPlus())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    channels = {"layer2": 8, "layer4": 32}[layer]
    expl = CRP(analyzer, layer, IndexedFeatures(*range(channels)))(x)
    assert expl.val.shape == (2, channels, 3, 32, 32) and expl.extras["layer"] == layer
    # a stage's output is a cut of the graph: nothing flows around it
    assert torch.count_nonzero(expl.extras["bypass"]) == 0
    torch.testing.assert_close(expl.val.sum(dim=1), analyzer(x).val, rtol=1e-10, atol=1e-12)


def test_a_layer_inside_a_block_returns_the_skip_relevance_as_bypass():
    torch.manual_seed(3)
    model = resnet64()
    analyzer = LRP(model, EpsilonPlus())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    expl = CRP(analyzer, "layer2.0.conv1", IndexedFeatures(*range(8)))(x)
    bypass = expl.extras["bypass"]
    assert bypass.abs().sum() > 0  # the downsample/skip branch of layer2.0
    torch.testing.assert_close(expl.val.sum(dim=1) + bypass, analyzer(x).val, rtol=1e-10, atol=1e-12)


def test_crp_on_a_two_block_model_equals_a_hand_masked_reference():
    from torch import nn

    from lrp_tasks.engine import Composite, EpsilonRule, GlobalTypeMap, LayerContext, PassRule, ZPlusRule, stabilize

    from .test_graph import TwoBlocks

    torch.manual_seed(4)
    model = TwoBlocks().double().eval()
    for blk in (model.block1, model.block2):
        blk.bn1, blk.bn2 = nn.Identity(), nn.Identity()
    comp = Composite(
        GlobalTypeMap({nn.Conv2d: ZPlusRule(), nn.Linear: EpsilonRule(), (nn.ReLU, nn.Identity): PassRule()})
    )
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    channels = (1, 3)
    got = CRP(LRP(model, comp), "block2.conv1", IndexedFeatures(*channels))(x)

    def ctx(layer, a, nonneg=False):
        return LayerContext(layer, a, layer(a), input_nonnegative=nonneg)

    def block_down(blk, h_in, r1, c2, pre, r):
        s = r / stabilize(pre, 1e-9)
        r_branch = ZPlusRule().relevance(ctx(blk.conv2, r1, True), c2 * s)
        return r_branch, h_in * s  # at conv1's output (through the ReLU), at the skip

    h0 = model.relu(model.stem(x))
    acts, h = [], h0
    for blk in (model.block1, model.block2):
        r1 = torch.relu(blk.conv1(h))
        c2 = blk.conv2(r1)
        acts.append((h, r1, c2, c2 + h))
        h = torch.relu(c2 + h)
    pooled = model.pool(h)
    logits = model.fc(pooled.flatten(1))
    r = torch.zeros_like(logits)
    r[torch.arange(2), logits.argmax(1)] = 1
    r = EpsilonRule().relevance(ctx(model.fc, pooled.flatten(1)), r).reshape(pooled.shape)
    r = h / (h.shape[2] * h.shape[3]) * (r / stabilize(pooled, 1e-9))  # LRP-0 through the average pool
    at_conv1, skip = block_down(model.block2, *acts[1], r)

    def below_block2(r_in):  # block 1 and the stem, by hand
        r_branch, r_skip = block_down(model.block1, *acts[0], r_in)
        r_branch = ZPlusRule().relevance(ctx(model.block1.conv1, acts[0][0], True), r_branch)
        return ZPlusRule().relevance(ctx(model.stem, x), r_branch + r_skip)

    h_in = acts[1][0]
    for k, c in enumerate(channels):
        mask = torch.zeros(1, at_conv1.shape[1], 1, 1, dtype=x.dtype)
        mask[0, c] = 1
        concept = ZPlusRule().relevance(ctx(model.block2.conv1, h_in, True), at_conv1 * mask)
        torch.testing.assert_close(got.val[:, k], below_block2(concept))
    torch.testing.assert_close(got.extras["bypass"], below_block2(skip))
    torch.testing.assert_close(got.extras["concept_relevances"], at_conv1.sum(dim=(2, 3))[:, list(channels)])
