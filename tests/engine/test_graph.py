"""Residual and branching models on their torch.fx graph (issue: LRP for real architectures)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor, nn

from lrp_tasks.engine import (
    LRP,
    PRESETS,
    Cat,
    Composite,
    EpsilonRule,
    GlobalMap,
    GlobalTypeMap,
    GraphTraceError,
    LayerContext,
    ModelCheckError,
    NameMap,
    PassRule,
    SoftmaxOutputError,
    ZeroRule,
    ZPlusRule,
    canonize,
    stabilize,
    strip_softmax,
)

from .resnets import BasicBlock, Bottleneck, DataDependent, DenseBlock, SharedTwice, small_resnet


def preset(name: str):
    return PRESETS[name](-3.0, 3.0) if name == "EpsilonGammaBox" else PRESETS[name]()


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_resnet_with_every_preset(block, name):
    torch.manual_seed(0)
    model = small_resnet(block)
    x = torch.randn(2, 3, 32, 32)
    fused = canonize(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())  # all BNs follow a conv
    torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)
    analyzer = LRP(fused, preset(name))
    assert type(analyzer) is LRP and analyzer.plan.kind == "graph"
    expl = analyzer(x)
    assert expl.val.shape == x.shape and torch.isfinite(expl.val).all()
    first = analyzer.rules[0]
    assert type(first).__name__ == {"EpsilonGammaBox": "ZBoxRule", "EpsilonPlusFlat": "FlatRule",
                                    "EpsilonAlpha2Beta1Flat": "FlatRule"}.get(name, type(first).__name__)


def bias_free_resnet(block=BasicBlock) -> nn.Module:
    """The ResNet with BatchNorms replaced by identities and no biases: nothing absorbs relevance."""
    model = small_resnet(block)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, child_name, nn.Identity())
    model.fc = nn.Linear(model.fc.in_features, model.fc.out_features, bias=False)
    return model.double().eval()


ZERO = Composite(GlobalMap(ZeroRule()), GlobalTypeMap({(nn.ReLU, nn.Identity): PassRule()}))


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_conservation_through_residual_adds(block):
    torch.manual_seed(1)
    model = bias_free_resnet(block)
    analyzer = LRP(model, ZERO)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    expl = analyzer(x, layerwise_relevances=True)
    # stabilizers (1e-9) absorb a little where z is tiny; a lost branch would cost O(1)
    torch.testing.assert_close(expl.relevance_sum(), torch.ones(3, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    layerwise = expl.layerwise_relevances
    assert next(iter(layerwise)) == "input" and "add" in layerwise  # every step, input first
    assert list(layerwise)[-1] == "fc"
    # at each residual add, what comes in equals what its two summands receive
    record = analyzer.forward_record(x)
    for i, step in enumerate(analyzer.plan.steps):
        if step.name.startswith("add"):
            shares = analyzer._distribute(i, step, record, layerwise[step.name])
            assert len(shares) == 2
            total = sum(s.flatten(1).sum(1) for _, s in shares)
            torch.testing.assert_close(total, layerwise[step.name].flatten(1).sum(1))


class TwoBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.block1 = BasicBlock(4, 4)
        self.block2 = BasicBlock(4, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block2(self.block1(self.relu(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_equals_hand_written_per_block_reference():
    torch.manual_seed(2)
    model = TwoBlocks().double().eval()
    for blk in (model.block1, model.block2):
        blk.bn1, blk.bn2 = nn.Identity(), nn.Identity()
    comp = Composite(
        GlobalTypeMap({nn.Conv2d: ZPlusRule(), nn.Linear: EpsilonRule(), (nn.ReLU, nn.Identity): PassRule()})
    )
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    got = LRP(model, comp)(x).val

    def ctx(layer, a, nonneg=False):
        return LayerContext(layer, a, layer(a), input_nonnegative=nonneg)

    # forward, by hand
    h0 = model.relu(model.stem(x))
    acts = []
    h = h0
    for blk in (model.block1, model.block2):
        r1 = torch.relu(blk.conv1(h))
        c2 = blk.conv2(r1)
        pre = c2 + h
        acts.append((h, r1, c2, pre))
        h = torch.relu(pre)
    pooled = model.pool(h)
    logits = model.fc(pooled.flatten(1))
    target = logits.argmax(1)
    r = torch.zeros_like(logits)
    r[torch.arange(2), target] = 1
    # backward, block by block
    r = EpsilonRule().relevance(ctx(model.fc, pooled.flatten(1)), r).reshape(pooled.shape)
    leaf = h.detach().requires_grad_(True)
    with torch.enable_grad():
        pooled_graph = model.pool(leaf)
    r = ZeroRule().relevance(LayerContext(model.pool, leaf, pooled, graph_output=pooled_graph), r)
    for blk, (h_in, r1, c2, pre) in zip((model.block2, model.block1), reversed(acts), strict=True):
        s = r / stabilize(pre, 1e-9)
        r_branch, r_skip = c2 * s, h_in * s
        r_branch = ZPlusRule().relevance(ctx(blk.conv2, r1, True), r_branch)
        r_branch = ZPlusRule().relevance(ctx(blk.conv1, h_in, True), r_branch)
        r = r_branch + r_skip
    want = ZPlusRule().relevance(ctx(model.stem, x), r)
    torch.testing.assert_close(got, want)


def test_densenet_concatenation_conserves_and_splits_by_slice():
    torch.manual_seed(3)
    model = DenseBlock().double().eval()
    for seq in model.convs:
        seq[0].bias = None
    model.fc.bias = None
    analyzer = LRP(model, Composite(GlobalMap(ZeroRule()), GlobalTypeMap({nn.ReLU: PassRule()})))
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    expl = analyzer(x, layerwise_relevances=True)
    torch.testing.assert_close(expl.relevance_sum(), torch.ones(2, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    cat_steps = [s for s in analyzer.plan.steps if isinstance(s.module, Cat)]
    assert len(cat_steps) == 4  # one per dense layer, one before pooling


def test_shared_module_used_twice_equals_unrolled_model():
    torch.manual_seed(4)
    model = SharedTwice().eval()
    unrolled = nn.Sequential(model.inp, nn.ReLU(), model.shared, nn.ReLU(), model.shared, nn.ReLU(), model.out)
    comp = Composite(GlobalTypeMap({nn.Linear: EpsilonRule(), nn.ReLU: PassRule()}))
    x = torch.randn(3, 6)
    graph_expl = LRP(model, comp)(x)
    torch.testing.assert_close(graph_expl.val, LRP(unrolled, comp)(x).val)
    analyzer = LRP(model, comp)
    assert analyzer.layer_names.count("shared") == 2


def test_composites_address_graph_nodes_by_name_and_type():
    model = canonize(small_resnet())
    comp = Composite(GlobalTypeMap({nn.Conv2d: ZPlusRule(), nn.ReLU: PassRule()}), NameMap({"layer1.*": ZeroRule()}))
    analyzer = LRP(model, comp)
    rules = dict(zip(analyzer.layer_names, analyzer.rules, strict=True))
    assert isinstance(rules["layer1.0.conv1"], ZeroRule) and isinstance(rules["layer2.0.conv1"], ZPlusRule)
    assert "layer1.0.conv1" in repr(analyzer)
    assert re.search(r"add_1: operator.add \[layer2.0\] +=> ZeroRule\(\),", repr(analyzer))


def test_untraceable_model_gets_a_clear_error():
    with pytest.raises(GraphTraceError, match=r"(?s)could not trace DataDependent.*What to do"):
        LRP(DataDependent())


class UsesSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.sigmoid(x))


class EndsInSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.fc(x) + x[:, :2], dim=1)


def test_unknown_function_fails_model_check_by_name():
    with pytest.raises(ModelCheckError) as info:
        LRP(UsesSigmoid())
    assert "torch.sigmoid" in str(info.value) and "unsupported activation sigmoid" in str(info.value)


def test_graph_softmax_refused_then_stripped():
    model = EndsInSoftmax().eval()
    with pytest.raises(SoftmaxOutputError, match="strip_softmax"):
        LRP(model)
    stripped = strip_softmax(model)
    x = torch.randn(2, 4)
    torch.testing.assert_close(torch.softmax(stripped(x), 1), model(x))
    assert LRP(stripped)(x).val.shape == (2, 4)


def test_graph_batch_equals_per_sample():
    torch.manual_seed(5)
    analyzer = LRP(canonize(small_resnet()), PRESETS["EpsilonPlusFlat"]())
    x = torch.randn(3, 3, 32, 32)
    batch = analyzer(x).val
    for i in range(3):
        torch.testing.assert_close(batch[i : i + 1], analyzer(x[i : i + 1]).val, rtol=1e-4, atol=1e-7)
