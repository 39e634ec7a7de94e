"""Model code idioms from torchvision's models and PyTorch's tutorials, traced and explained.

Each idiom model is explained with a preset and compared with a reference written without the
idiom (``nn.Flatten``, ``flatten(2)``, scaled weights...) sharing its weights: relevance must be
identical. Models are bias-free so conservation (Σ R_in = 1 for a one-hot seed) is checked too."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrp_tasks.engine import LRP, Composite, EpsilonPlus, GlobalTypeMap, ModelCheckError, ZeroRule


class Head(nn.Module):
    """conv → ReLU → max pool, then `tail` (the idiom) and a Linear classifier; bias-free."""

    def __init__(self, tail: Callable[[Tensor], Tensor], features: int = 4 * 4 * 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(features, 3, bias=False)
        self.tail = tail

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv(x)), (2, 2))  # PyTorch's "Neural Networks" tutorial
        return self.fc(self.tail(x))


def _tails() -> dict[str, Callable[[Tensor], Tensor]]:
    return {
        "view(x.size(0), -1)": lambda x: x.view(x.size(0), -1),  # tutorials, old torchvision AlexNet
        "reshape(x.shape[0], -1)": lambda x: x.reshape(x.shape[0], -1),
        "view(x.shape[0], 64)": lambda x: x.view(x.shape[0], 64),
        "view(-1, 4 * 4 * 4)": lambda x: x.view(-1, 4 * 4 * 4),  # the tutorial's LeNet
        "torch.flatten(x, 1)": lambda x: torch.flatten(x, 1),  # torchvision ResNet, VGG, MobileNet
        "x.flatten(1)": lambda x: x.flatten(1),
        "view(n, c * h * w) from x.size()": lambda x: x.view(x.size(0), x.size(1) * x.size(2) * x.size(3)),
        "floordiv on sizes": lambda x: x.view(x.size(0), x.numel() // x.size(0)),
        "pow on sizes": lambda x: x.view(x.size(0), x.size(1) * x.size(2) ** 2),
        "view(n, c, -1) then flatten": lambda x: x.view(x.size(0), x.size(1), -1).flatten(1),
        "unflatten": lambda x: x.flatten(1).unflatten(1, (4, 16)).reshape(x.shape[0], -1),
    }


class ChannelShuffle(nn.Module):
    """torchvision ShuffleNetV2's channel_shuffle (size() unpacking, //, view, transpose)."""

    def __init__(self, groups: int = 2, shuffled: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4 * 8 * 8, 3, bias=False)
        self.groups, self.shuffled = groups, shuffled

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv(x))
        if self.shuffled:
            batchsize, num_channels, height, width = x.size()
            channels_per_group = num_channels // self.groups
            x = x.view(batchsize, self.groups, channels_per_group, height, width)
            x = torch.transpose(x, 1, 2).contiguous()
            x = x.view(batchsize, num_channels, height, width)
        else:  # the same permutation written as indexing
            x = x[:, [0, 2, 1, 3]]
        return self.fc(torch.flatten(x, 1))


class Patches(nn.Module):
    """torchvision VisionTransformer's _process_input (shape unpacking, //, reshape, permute),
    then the mean over tokens; `reference` writes it with flatten(2) and transpose."""

    def __init__(self, reference: bool = False, patch: int = 4) -> None:
        super().__init__()
        self.conv_proj = nn.Conv2d(1, 6, patch, stride=patch, bias=False)
        self.head = nn.Linear(6, 3, bias=False)
        self.patch, self.reference = patch, reference

    def forward(self, x: Tensor) -> Tensor:
        if self.reference:
            x = self.conv_proj(x).flatten(2).transpose(1, 2)
        else:
            n, _, h, w = x.shape
            n_h, n_w = h // self.patch, w // self.patch
            x = self.conv_proj(x)
            x = x.reshape(n, 6, n_h * n_w)
            x = x.permute(0, 2, 1)
        return self.head(F.relu(x).mean(dim=1))


class Scaled(nn.Module):
    """A constant factor in front of a layer (``x * 2.0``, ``x / 2``, ``2.0 * x``, ``torch.mul``);
    `factor` folded into the weights instead when `fold`."""

    def __init__(self, form: str, fold: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4 * 8 * 8, 3, bias=False)
        self.form, self.fold = form, fold

    def forward(self, x: Tensor) -> Tensor:
        if not self.fold:
            x = {
                "x * 2.0": lambda: x * 2.0,
                "2.0 * x": lambda: 2.0 * x,
                "x / 0.5": lambda: x / 0.5,
                "torch.mul(x, 2)": lambda: torch.mul(x, 2),
                "x.div(0.5)": lambda: x.div(0.5),
            }[self.form]()
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


def _pairs() -> list[tuple[str, Callable[[], nn.Module], Callable[[], nn.Module]]]:
    pairs = [(name, lambda t=tail: Head(t), lambda: Head(nn.Flatten())) for name, tail in _tails().items()]
    pairs.append(("ShuffleNet channel_shuffle", ChannelShuffle, lambda: ChannelShuffle(shuffled=False)))
    pairs.append(("ViT _process_input", Patches, lambda: Patches(reference=True)))
    for form in ("x * 2.0", "2.0 * x", "x / 0.5", "torch.mul(x, 2)", "x.div(0.5)"):
        pairs.append((form, lambda f=form: Scaled(f), lambda f=form: _folded(f)))
    return pairs


def _folded(form: str) -> nn.Module:
    model = Scaled(form, fold=True)
    model._double = True  # marks the reference whose conv weights are doubled after loading
    return model


@pytest.mark.parametrize(("name", "idiom", "reference"), _pairs(), ids=[p[0] for p in _pairs()])
def test_idiom_is_explained_like_its_reference(name, idiom, reference):
    torch.manual_seed(0)
    model, ref = idiom().eval(), reference().eval()
    ref.load_state_dict(model.state_dict())
    if getattr(ref, "_double", False):
        with torch.no_grad():
            ref.conv.weight.mul_(2.0)
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(model(x), ref(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a conservation gap would warn
        got = LRP(model, EpsilonPlus())(x, 1).val
        want = LRP(ref, EpsilonPlus())(x, 1).val
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got.flatten(1).sum(1), torch.ones(3), rtol=1e-4, atol=1e-4)


class Normalised(nn.Module):
    """GoogLeNet's _transform_input style: ``x * 2.0 - 1.0`` in front of the first layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x * 2.0 - 1.0)


def test_a_constant_added_absorbs_its_share_like_a_bias():
    torch.manual_seed(0)
    model = Normalised().eval()
    x = torch.rand(4, 6) + 0.1
    composite = Composite(GlobalTypeMap({nn.Linear: ZeroRule()}))
    analyzer = LRP(model, composite, conservation_tolerance=None)
    expl = analyzer(x, 0, layerwise_relevances=True)
    layerwise = expl.layerwise_relevances
    at_sub = layerwise[analyzer.plan.steps[analyzer.plan.index_of("sub")].name]
    scaled = 2.0 * x
    # the Add step's LRP-0 split: the activation keeps (2x)/(2x − 1) of the relevance; Scale passes it on
    torch.testing.assert_close(expl.val, at_sub * scaled / (scaled - 1.0), rtol=1e-5, atol=1e-7)
    # the analyzer lists them as steps with rules, not as unknown functions
    text = repr(analyzer)
    assert "operator.mul" in text and "PassRule" in text and "operator.sub" in text


def test_size_arithmetic_is_no_step_of_the_model_table():
    model = Head(lambda x: x.view(x.size(0), x.size(1) * x.size(2) ** 2))
    text = repr(LRP(model, EpsilonPlus()))
    assert "operator.pow" not in text and "Tensor.size" not in text and "operator.mul" not in text
    assert "Tensor.view" in text


def test_a_product_of_two_activations_is_still_refused():
    class Square(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(x * x)

    with pytest.raises(ModelCheckError, match="unknown function"):
        LRP(Square(), EpsilonPlus())
