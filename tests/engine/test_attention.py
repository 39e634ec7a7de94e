"""Attention lowered onto steps (attention.py): the lowered model computes what the module computes,
AttnLRP on it equals LXT's gradient formulation, and nothing of the user's model or of torch changes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrp_tasks.engine import (
    LRP,
    Add,
    Composite,
    GlobalTypeMap,
    MatMul,
    Softmax,
    SoftmaxRule,
    UniformRule,
    ZeroRule,
)

DT = torch.float64


class MHAModel(nn.Module):
    """A residual self-attention block and a head on the first token, with masks as buffers."""

    def __init__(self, batch_first=True, need_weights=False, masks=False, dropout=0.0):
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, batch_first=batch_first, dropout=dropout)
        self.head = nn.Linear(8, 3)
        self.batch_first, self.need_weights = batch_first, need_weights
        self.register_buffer("attn_mask", torch.tensor([[False, True, False, False, True]]).repeat(5, 1) if masks
                             else None)
        self.register_buffer("padding", torch.tensor([[False, False, False, True, False]] * 2) if masks else None)

    def forward(self, x):
        t = x if self.batch_first else x.transpose(0, 1)
        y, _ = self.att(t, t, t, need_weights=self.need_weights, attn_mask=self.attn_mask,
                        key_padding_mask=self.padding)
        y = y if self.batch_first else y.transpose(0, 1)
        return self.head((x + y)[:, 0])


class TimmLikeAttention(nn.Module):
    """timm's Attention: one qkv Linear, F.scaled_dot_product_attention, a proj Linear."""

    def __init__(self, dim=8, heads=2, explicit=False, causal=False):
        super().__init__()
        self.heads, self.explicit, self.causal = heads, explicit, causal
        self.qkv, self.proj, self.head = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), nn.Linear(dim, 3)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if self.explicit:
            scores = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
            if self.causal:
                scores = scores + self.causal_mask
            y = scores.softmax(dim=-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        y = self.proj(y.transpose(1, 2).reshape(b, n, c))
        return self.head((x + y).mean(1))

    @property
    def causal_mask(self):
        return torch.full((5, 5), float("-inf"), dtype=DT).triu(1)


def _x(n=2):
    torch.manual_seed(7)
    return torch.randn(n, 5, 8, dtype=DT)


def _recorded(model, x):
    return LRP(model, skip_checks=True).forward_record(x).output


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("masks", [False, True])
def test_lowered_multihead_attention_computes_the_module_output(batch_first, need_weights, masks):
    torch.manual_seed(0)
    model = MHAModel(batch_first, need_weights, masks, dropout=0.3).to(DT).eval()
    x = _x()
    torch.testing.assert_close(_recorded(model, x), model(x))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layers_are_lowered_and_printed(norm_first):
    torch.manual_seed(1)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True, norm_first=norm_first)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Flatten(), nn.Linear(40, 3))
    model = model.to(DT).eval()
    analyzer = LRP(model)
    x = _x()
    torch.testing.assert_close(analyzer.forward_record(x).output, model(x))
    text = repr(analyzer)
    for shown in ("0.layers.1.self_attn.in_proj_v", "0.layers.0.self_attn.out_proj", "torch.softmax", "torch.matmul"):
        assert shown in text
    assert torch.isfinite(analyzer(x).val).all()


def test_sdpa_is_lowered_and_gives_the_relevance_of_the_same_attention_written_out():
    torch.manual_seed(2)
    for causal in (False, True):
        fused = TimmLikeAttention(causal=causal).to(DT).eval()
        explicit = copy.deepcopy(fused)
        explicit.explicit = True
        x = _x()
        a, b = LRP(fused), LRP(explicit)
        torch.testing.assert_close(a.forward_record(x).output, fused(x))
        assert any(isinstance(s.module, Softmax) for s in a.plan.steps)
        torch.testing.assert_close(a(x, 1).val, b(x, 1).val)


class _Divide(torch.autograd.Function):
    """LXT's efficient form of the uniform rule: identity forward, gradient divided by `factor`."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad / ctx.factor, None


def _lxt_style_relevance(model: MHAModel, x, target):
    """x ⊙ ∇x of the model with q, k gradients divided by 4 and v by 2 (AttnLRP in LXT)."""
    att = model.att
    x = x.clone().requires_grad_(True)
    w, b = att.in_proj_weight, att.in_proj_bias
    q, k, v = (F.linear(x, w[i * 8:(i + 1) * 8], b[i * 8:(i + 1) * 8]) for i in range(3))
    q, k, v = _Divide.apply(q, 4), _Divide.apply(k, 4), _Divide.apply(v, 2)
    q, k, v = (t.reshape(len(x), 5, 2, 4).transpose(1, 2) for t in (q, k, v))
    y = torch.softmax(q @ k.transpose(-2, -1) / 2.0, -1) @ v
    y = att.out_proj(y.transpose(1, 2).reshape(len(x), 5, 8))
    out = model.head((x + y)[:, 0])
    (grad,) = torch.autograd.grad(out[:, target].sum(), x)
    return (x * grad).detach()


def test_attnlrp_on_lowered_attention_equals_lxts_gradient_formulation():
    torch.manual_seed(3)
    model = MHAModel().to(DT).eval()
    x = _x(3)
    composite = Composite(GlobalTypeMap({
        nn.Linear: ZeroRule(stabilizer=0.0), Add: ZeroRule(stabilizer=0.0), MatMul: UniformRule(0.0),
        Softmax: SoftmaxRule(),
    }))
    expl = LRP(model, composite, conservation_tolerance=None).analyze(x, 2, seed="logit")  # R = y ⊙ ∂y/∂y
    torch.testing.assert_close(expl.val, _lxt_style_relevance(model, x, 2), rtol=1e-10, atol=1e-12)


def test_the_users_model_and_torch_classes_are_left_as_they_were():
    torch.manual_seed(4)
    mha_class = dict(vars(nn.MultiheadAttention))
    sdpa = F.scaled_dot_product_attention
    model = MHAModel(masks=True).to(DT).eval()
    other = TimmLikeAttention().to(DT).eval()
    x = _x()
    alone = LRP(copy.deepcopy(model))(x).val
    state = copy.deepcopy(model.state_dict())
    a, b = LRP(model), LRP(other)
    together = a(x).val
    b(x)
    torch.testing.assert_close(together, alone)
    assert dict(vars(nn.MultiheadAttention)) == mha_class and F.scaled_dot_product_attention is sdpa
    assert "forward" not in vars(model.att) and not model.att._forward_hooks and not model.att._forward_pre_hooks
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [n for n, _ in model.named_modules()] == ["", "att", "att.out_proj", "head"]
    assert all(p.grad is None for p in model.parameters())


class ModuleSoftmaxAttention(TimmLikeAttention):
    """The attention written out with an nn.Softmax module (as many ViT re-implementations do)."""

    def __init__(self):
        super().__init__()
        self.softmax = nn.Softmax(dim=-1)
        self.oddity = torch.erf

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = self.softmax((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5) @ v
        y = self.proj(y.transpose(1, 2).reshape(b, n, c))
        return self.head(self.oddity(x + y).mean(1))


def test_an_nn_softmax_module_is_a_softmax_step_and_the_check_table_names_every_step():
    from lrp_tasks.engine import ModelCheckError

    torch.manual_seed(6)
    model = ModuleSoftmaxAttention().to(DT).eval()
    with pytest.raises(ModelCheckError) as failure:
        LRP(model)
    rows = {name: status for name, _, status in failure.value.report}
    assert rows["softmax"] == rows["matmul"] == rows["matmul_1"] == rows["qkv"] == "supported"
    assert rows["erf"] == "unknown function"
    model.oddity = nn.Identity()
    reference = TimmLikeAttention().to(DT).eval()  # the same attention through sdpa
    reference.load_state_dict(model.state_dict())
    x = _x()
    torch.testing.assert_close(LRP(model)(x, 1).val, LRP(reference)(x, 1).val)


class OptionalArguments(TimmLikeAttention):
    """timm's forward(x, attn_mask=None, is_causal=False): optional arguments are fixed at their defaults."""

    def forward(self, x, attn_mask=None, is_causal=False):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        y = self.proj(y.transpose(1, 2).reshape(b, n, c))
        return self.head((x + y).mean(1))


def test_optional_forward_arguments_are_fixed_at_their_defaults():
    torch.manual_seed(8)
    model = OptionalArguments().to(DT).eval()
    reference = TimmLikeAttention().to(DT).eval()
    reference.load_state_dict(model.state_dict())
    x = _x()
    analyzer = LRP(model)
    assert [s.name for s in analyzer.plan.steps if s.kind == "input"] == ["input"]
    torch.testing.assert_close(analyzer(x, 2).val, LRP(reference)(x, 2).val)


class DropoutAfterSoftmax(TimmLikeAttention):
    """timm's non-fused path: softmax, then the attn_drop module, then ·v."""

    def __init__(self):
        super().__init__()
        self.attn_drop = nn.Dropout(0.1)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(dim=-1))
        y = self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return self.head((x + y).mean(1))


def test_cp_lrp_finds_the_attention_probabilities_behind_dropout():
    from lrp_tasks.engine import CPLRP

    torch.manual_seed(9)
    model = DropoutAfterSoftmax().to(DT).eval()
    reference = TimmLikeAttention().to(DT).eval()
    reference.load_state_dict(model.state_dict())
    x = _x()
    torch.testing.assert_close(LRP(model, CPLRP())(x, 0).val, LRP(reference, CPLRP())(x, 0).val)
