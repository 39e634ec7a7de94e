"""MatMul and Softmax families against their closed forms (AttnLRP, LRP-SPEC "Transformers")."""

from __future__ import annotations

import pytest
import torch

from lrp_tasks.engine import RULES, SoftmaxRule, StopRule, UniformRule, stabilize
from lrp_tasks.engine.functional import MatMul, Ref, Softmax, record_function

DT = torch.float64


def _shares(step, rule, values, relevance, keep=None):
    record = record_function(step, values, rule, keep or [True] * len(values))
    return record.output, step.relevance(rule, record, relevance)


def test_uniform_rule_on_q_k_transpose_is_half_the_epsilon_rule_per_operand():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, 4, dtype=DT), torch.randn(2, 3, 6, 4, dtype=DT)
    kt = k.transpose(-2, -1)
    relevance = torch.randn(2, 3, 5, 6, dtype=DT)
    y, (r_q, r_k) = _shares(MatMul("call_function", torch.matmul, (Ref(0), Ref(1)), {}), UniformRule(0.1), [q, kt],
                            relevance)
    s = relevance / stabilize(torch.einsum("bhid,bhdj->bhij", q, kt), 0.1)
    torch.testing.assert_close(r_q, q * torch.einsum("bhij,bhdj->bhid", s, kt) / 2)
    torch.testing.assert_close(r_k, kt * torch.einsum("bhid,bhij->bhdj", q, s) / 2)
    torch.testing.assert_close(y, q @ kt)


def test_uniform_rule_conserves_with_a_tiny_epsilon_and_works_through_einsum():
    torch.manual_seed(1)
    a, b = torch.randn(3, 4, 5, dtype=DT), torch.randn(3, 5, 2, dtype=DT)
    relevance = torch.randn(3, 4, 2, dtype=DT)
    step = MatMul("call_function", torch.einsum, ("bij,bjk->bik", Ref(0), Ref(1)), {})
    _, (r_a, r_b) = _shares(step, UniformRule(1e-12), [a, b], relevance)
    s = relevance / stabilize(a @ b, 1e-12)
    torch.testing.assert_close(r_a, a * (s @ b.transpose(1, 2)) / 2)
    torch.testing.assert_close((r_a.sum() + r_b.sum()), relevance.sum(), rtol=1e-9, atol=1e-9)


def test_a_product_with_a_parameter_is_linear_and_cp_lrp_keeps_attention_probabilities_constant():
    torch.manual_seed(2)
    probs, v = torch.softmax(torch.randn(2, 4, 4, dtype=DT), -1), torch.randn(2, 4, 3, dtype=DT)
    relevance = torch.randn(2, 4, 3, dtype=DT)
    step = MatMul("call_function", torch.matmul, (Ref(0), Ref(1)), {})
    full_v = v * (probs.transpose(1, 2) @ (relevance / stabilize(probs @ v, 1e-9)))
    _, (r_p, r_v) = _shares(step, UniformRule(), [probs, v], relevance, keep=[False, True])  # probs: a constant
    assert r_p is None
    torch.testing.assert_close(r_v, full_v)
    step.softmax_inputs = frozenset({0})
    _, (r_p, r_v) = _shares(step, UniformRule(softmax_constant=True), [probs, v], relevance)
    assert r_p is None
    torch.testing.assert_close(r_v, full_v)
    _, (r_p, r_v) = _shares(step, UniformRule(), [probs, v], relevance)  # AttnLRP: both halves
    torch.testing.assert_close(r_v, full_v / 2)


def test_softmax_rule_is_x_times_r_minus_s_sum_r_and_equals_gradient_times_input():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 5, dtype=DT)
    x[0, 0, 1] = float("-inf")  # a masked position
    relevance = torch.randn(2, 3, 5, dtype=DT)
    relevance[0, 0, 1] = 0.0
    step = Softmax("call_function", torch.softmax, (Ref(0),), {"dim": -1})
    s, (r_x,) = _shares(step, SoftmaxRule(), [x], relevance)
    xf = torch.where(torch.isfinite(x), x, 0.0)
    torch.testing.assert_close(r_x, xf * (relevance - s * relevance.sum(-1, keepdim=True)))
    assert r_x[0, 0, 1] == 0 and torch.isfinite(r_x).all()
    leaf = x[1].clone().requires_grad_(True)  # gradient×input: x ⊙ Jᵀ (R / s)
    (grad,) = torch.autograd.grad(torch.softmax(leaf, -1), leaf, relevance[1] / s[1])
    torch.testing.assert_close(r_x[1], leaf.detach() * grad)
    _, (stopped,) = _shares(step, StopRule(), [x], relevance)
    assert stopped is None


def test_rules_are_named_in_the_one_table_and_refuse_other_steps():
    assert RULES["Uniform"] is UniformRule and RULES["Softmax"] is SoftmaxRule and RULES["Stop"] is StopRule
    assert repr(UniformRule()) == "UniformRule(epsilon=1e-09)"
    assert not UniformRule().is_compatible(torch.nn.Linear(2, 2))
    assert not SoftmaxRule().is_compatible(MatMul("call_function", torch.matmul, (Ref(0), Ref(1)), {}))
    with pytest.raises(ValueError, match="stabilizer"):
        UniformRule(-1.0)
