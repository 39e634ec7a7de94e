"""canonize shares every parameter it does not change: only fused layers are new."""

from __future__ import annotations

import torch
from torch import nn

from lrp_tasks.engine import canonize, strip_softmax

from .models import relu_mlp, seed_cnn
from .resnets import small_resnet


def test_nothing_to_fuse_returns_the_model_itself():
    model = relu_mlp()
    assert canonize(model) is model
    resnet = small_resnet()
    for m in list(resnet.modules()):
        for name, child in list(m.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(m, name, nn.Identity())
    assert canonize(resnet) is resnet


def test_sequential_fusion_shares_unfused_layers_and_leaves_the_model_unchanged():
    torch.manual_seed(0)
    model = seed_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = canonize(model)
    originals = {id(p) for p in model.parameters()}
    new = [name for name, p in fused.named_parameters() if id(p) not in originals]
    assert new == ["0.5.weight", "0.5.bias"]  # the conv the BatchNorm was folded into
    assert fused[1][1] is model[1][1] and fused[0][0] is model[0][0]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)


def test_graph_fusion_shares_unfused_layers():
    torch.manual_seed(1)
    model = small_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = canonize(model)
    originals = {id(p) for p in model.parameters()}
    shared = [name for name, p in fused.named_parameters() if id(p) in originals]
    assert shared == ["fc.weight", "fc.bias"]  # every conv is followed by a BatchNorm here
    assert fused.get_submodule("fc") is model.fc and fused.get_submodule("layer1.0.relu") is model.layer1[0].relu
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)
    # strip_softmax and canonize compose without copying what they keep
    stripped = strip_softmax(nn.Sequential(model, nn.Softmax(dim=1)))
    assert stripped[0] is model
