"""Issue 21: the element-wise activations of today's architectures (GELU, SiLU, Mish, Hardswish, as
modules and as functions) are accepted by the model check, like RelevancePropagation.jl accepts gelu,
swish and mish, and get the identity rule by default (relevance passes unchanged, as AttnLRP and LXT
do); they are assignable like any step. Squashing activations stay refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrp_tasks.engine import LRP, Composite, EpsilonPlusFlat, GlobalTypeMap, ModelCheckError, ZeroRule
from lrp_tasks.engine.functional import Activation

MODULES = [nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU(), nn.Mish(), nn.Hardswish()]
FUNCTIONS = [F.gelu, F.silu, F.mish, F.hardswish]


class Functional(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn, self.fc1, self.fc2 = fn, nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.fn(self.fc1(x)))


def _relevance_around_the_activation(model: nn.Module, composite=None) -> tuple[Tensor, Tensor]:
    """Relevance at the activation's output and at its input (the first Linear's output)."""
    torch.manual_seed(0)
    expl = LRP(model, composite, conservation_tolerance=None)(torch.randn(5, 4, dtype=torch.float64),
                                                              layerwise_relevances=True)
    rel = expl.layerwise_relevances
    names = list(rel)  # input, first linear's output, activation's output, ...
    return rel[names[2]], rel[names[1]]


@pytest.mark.parametrize("act", MODULES, ids=lambda m: repr(m))
def test_modules_are_accepted_and_pass_relevance_unchanged(act: nn.Module) -> None:
    model = nn.Sequential(nn.Linear(4, 6), act, nn.Linear(6, 3)).double().eval()
    analyzer = LRP(model)
    assert "PassRule()" in repr(analyzer).splitlines()[2]
    after, before = _relevance_around_the_activation(model)
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    after, before = _relevance_around_the_activation(model, EpsilonPlusFlat())  # the presets too
    torch.testing.assert_close(before, after, rtol=0, atol=0)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_functions_are_an_activation_step_with_the_identity_rule(fn) -> None:
    model = Functional(fn).double().eval()
    analyzer = LRP(model)
    steps = [step for step in analyzer.plan.steps if isinstance(step.module, Activation)]
    assert len(steps) == 1 and steps[0].module.target is fn
    after, before = _relevance_around_the_activation(model)
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_an_activation_takes_another_rule_when_assigned() -> None:
    """LRP-0 on GELU (z = gelu(x) per element): R_in = x · gelu'(x)·R/gelu(x)·... is not the identity:
    the assignment reaches the step."""
    model = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 3)).double().eval()
    after, before = _relevance_around_the_activation(model, Composite(GlobalTypeMap({nn.GELU: ZeroRule()})))
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("act", [nn.Sigmoid(), nn.Tanh(), nn.ELU(), nn.Softplus(), nn.Hardsigmoid()],
                         ids=lambda m: type(m).__name__)
def test_squashing_activations_stay_refused(act: nn.Module) -> None:
    with pytest.raises(ModelCheckError, match=f"unsupported activation {type(act).__name__}"):
        LRP(nn.Sequential(nn.Linear(4, 6), act, nn.Linear(6, 3)))


def test_sigmoid_as_a_function_stays_refused() -> None:
    with pytest.raises(ModelCheckError, match="unsupported activation sigmoid"):
        LRP(Functional(torch.sigmoid))
