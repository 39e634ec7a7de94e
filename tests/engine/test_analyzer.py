"""Analyzer behaviour: equivalences, conservation, batching, selection, and the model left alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_tasks.engine import (
    LRP,
    Composite,
    EpsilonGammaBox,
    EpsilonPlusFlat,
    EpsilonRule,
    GlobalMap,
    GlobalTypeMap,
    PassRule,
    TopK,
    ZeroRule,
    analyze,
    canonize,
)

from .models import relu_cnn, relu_mlp, seed_cnn

torch.manual_seed(0)


def zero_composite(stabilizer: float) -> Composite:
    return Composite(GlobalMap(ZeroRule(stabilizer=stabilizer)), GlobalTypeMap({(nn.ReLU, nn.Flatten): PassRule()}))


@pytest.mark.parametrize("make", [relu_mlp, relu_cnn])
def test_zero_rule_equals_gradient_times_input(make):
    torch.manual_seed(0)
    model = make().double()
    x = torch.randn(5, *((10,) if make is relu_mlp else (1, 8, 8)), dtype=torch.float64)
    # LRP-0 seeded with the logit equals gradient×input (Ancona et al. 2018), biases included.
    expl = LRP(model, zero_composite(1e-300))(x, seed="logit")
    xg = x.clone().requires_grad_(True)
    out = model(xg)
    (grad,) = torch.autograd.grad(out[torch.arange(5), expl.output_selection].sum(), xg)
    torch.testing.assert_close(expl.val, grad * x, rtol=1e-10, atol=1e-12)


def test_default_analyzer_is_zero_rule_everywhere():
    analyzer = LRP(relu_mlp())
    assert all(isinstance(r, ZeroRule) for r in analyzer.rules)


@pytest.mark.parametrize("rule", [ZeroRule(), EpsilonRule(1e-12)])
def test_conservation_at_every_layer_of_a_bias_free_net(rule):
    torch.manual_seed(3)
    model = relu_cnn(bias=False).double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    analyzer = LRP(model, Composite(GlobalMap(rule), GlobalTypeMap({(nn.ReLU, nn.Flatten): PassRule()})))
    expl = analyzer(x, layerwise_relevances=True)
    layerwise = expl.layerwise_relevances
    assert list(layerwise) == ["input", *analyzer.layer_names]  # input first, output last
    sums = [r.flatten(1).sum(1) for r in layerwise.values()]
    assert len(sums) == len(analyzer.rules) + 1
    for s in sums:
        torch.testing.assert_close(s, torch.ones(4, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layerwise["input"], expl.val)


def test_canonize_and_flatten_leave_outputs_unchanged_and_user_model_untouched():
    torch.manual_seed(0)
    model = seed_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 3, 32, 32)
    fused = canonize(model)
    torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert n_bn == 1  # the BN after a ReLU stays
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    from lrp_tasks.engine import flatten_model

    flat = flatten_model(model)
    assert all(not isinstance(m, nn.Sequential) for m in flat.children())
    torch.testing.assert_close(flat(x), model(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_equals_per_sample(dtype):
    torch.manual_seed(0)
    model = canonize(seed_cnn()).to(dtype)
    analyzer = LRP(model, EpsilonPlusFlat())
    x = torch.randn(4, 3, 32, 32, dtype=dtype)
    batch = analyzer(x)
    assert batch.val.dtype == dtype
    for i in range(4):
        single = analyzer(x[i : i + 1])
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(batch.val[i : i + 1], single.val, rtol=tol, atol=tol * 1e-3)


def test_user_model_left_exactly_as_it_was():
    torch.manual_seed(0)
    model = seed_cnn()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    analyzer = LRP(canonize(model), EpsilonGammaBox(-2.0, 2.0))
    raw = LRP(model, EpsilonPlusFlat())
    x = torch.randn(2, 3, 32, 32)
    analyzer(x)
    raw(x)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for p in model.parameters():
        assert p.grad is None
    for m in model.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks


def test_selection_variants_and_seed_modes():
    torch.manual_seed(0)
    model = relu_mlp()
    analyzer = LRP(model, Composite(GlobalTypeMap({nn.Linear: EpsilonRule(), nn.ReLU: PassRule()})))
    x = torch.randn(3, 10)
    logits = model(x)
    default = analyzer(x)
    assert torch.equal(default.output_selection, logits.argmax(1))
    fixed = analyze(x, analyzer, 2)
    assert fixed.output_selection.tolist() == [2, 2, 2]
    per = analyze(x, analyzer, [0, 1, 3])
    assert per.output_selection.tolist() == [0, 1, 3]
    for i, c in enumerate([0, 1, 3]):
        torch.testing.assert_close(per.val[i], analyze(x[i : i + 1], analyzer, c).val[0])
    top = analyze(x, analyzer, TopK(2))
    assert top.val.shape == (3, 2, 10) and top.output_selection.shape == (3, 2)
    assert torch.equal(top.output_selection, logits.topk(2, dim=1).indices)
    torch.testing.assert_close(top.val[:, 0], default.val)
    logit_seeded = analyze(x, analyzer, seed="logit")
    scale = logits[torch.arange(3), default.output_selection].detach()
    torch.testing.assert_close(logit_seeded.val, default.val * scale[:, None], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        analyze(x, analyzer, 7)
    with pytest.raises(ValueError, match="3 samples"):
        analyze(x, analyzer, [0, 1])


def test_nan_input_is_refused_with_the_sample():
    analyzer = LRP(relu_mlp())
    x = torch.randn(3, 10)
    x[1, 4] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf.*sample 1"):
        analyzer(x)


def test_analyzer_prints_every_layer_with_its_rule():
    analyzer = LRP(canonize(seed_cnn()), EpsilonPlusFlat())
    text = repr(analyzer)
    assert "0.0: Conv2d(3, 8" in text and "=> FlatRule()" in text
    assert "1.4: Linear(in_features=512, out_features=100" in text and "EpsilonRule(epsilon=1e-06)" in text
    assert text.count("=>") == len(analyzer.rules)


def test_works_inside_no_grad_and_with_inplace_relu():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(inplace=True), nn.Linear(5, 3)).eval()
    ref = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(2, 4)
    comp = Composite(GlobalTypeMap({nn.Linear: EpsilonRule(), nn.ReLU: PassRule()}))
    with torch.no_grad():
        got = LRP(model, comp)(x).val
    torch.testing.assert_close(got, LRP(ref, comp)(x).val)


def test_relevance_by_layer_names_sequential_and_graph():
    from .resnets import small_resnet

    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    analyzer = LRP(model)
    expl = analyzer(torch.randn(2, 4), layerwise_relevances=True)
    by_name = analyzer.relevance_by_layer(expl)
    assert list(by_name) == ["0", "1", "2"] and by_name["0"].shape == (2, 5) and by_name["2"].shape == (2, 3)
    graph = LRP(canonize(small_resnet()), EpsilonPlusFlat())
    gexpl = graph(torch.randn(1, 3, 32, 32), layerwise_relevances=True)
    assert graph.relevance_by_layer(gexpl)["layer1.0.conv1"].shape == (1, 4, 8, 8)
