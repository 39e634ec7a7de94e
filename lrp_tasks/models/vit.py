"""Vision Transformers with the module structure and parameter names of torchvision and of timm
(neither library is a dependency), for explaining and testing transformers at any size.

``build_torchvision_vit()`` has torchvision's ``VisionTransformer`` structure: ``conv_proj``,
``class_token``, ``encoder.pos_embedding``, ``encoder.layers.encoder_layer_i`` (``ln_1``,
``self_attention`` = ``nn.MultiheadAttention``, ``ln_2``, ``mlp`` = Linear-GELU-Dropout-Linear-
Dropout), ``encoder.ln``, ``heads.head``: its ``state_dict`` keys and shapes match torchvision's
(``vit_b_16`` is ``build_torchvision_vit(224, 16, 12, 12, 768, 3072)``).

``build_timm_vit()`` has timm's ``VisionTransformer``/DeiT structure: ``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.i`` (``norm1``, ``attn`` with one ``qkv`` Linear calling
``F.scaled_dot_product_attention`` and ``proj``, ``norm2``, ``mlp.fc1``/``fc2``), ``norm``,
``head``. :func:`timm_state_dict` maps a torchvision-structured state dict onto it: one model, two
implementations (the relevance must agree)."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LayerNorm = partial(nn.LayerNorm, eps=1e-6)


# -- torchvision's structure ------------------------------------------------------------------
class MLPBlock(nn.Sequential):
    """Linear → GELU → Dropout → Linear → Dropout (torchvision's MLPBlock: keys ``0`` and ``3``)."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, in_dim), nn.Dropout(dropout)
        )


class EncoderBlock(nn.Module):
    """Pre-norm block: x + attention(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = _LayerNorm(hidden_dim)
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = _LayerNorm(hidden_dim)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, input: Tensor) -> Tensor:
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + input
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    """Position embedding added, the blocks, a final LayerNorm."""

    def __init__(
        self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        blocks = OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout))
            for i in range(num_layers)
        )
        self.layers = nn.Sequential(blocks)
        self.ln = _LayerNorm(hidden_dim)

    def forward(self, input: Tensor) -> Tensor:
        return self.ln(self.layers(self.dropout(input + self.pos_embedding)))


class TorchvisionViT(nn.Module):
    """torchvision's ``VisionTransformer`` (no conv stem, no representation layer)."""

    def __init__(
        self, image_size: int, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int,
        num_classes: int = 10, dropout: float = 0.0, attention_dropout: float = 0.0, in_channels: int = 3,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, hidden_dim
        self.conv_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
        seq_length = (image_size // patch_size) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout)
        self.seq_length = seq_length
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        x = self.conv_proj(x)  # (n, hidden, h/p, w/p)
        x = x.reshape(n, self.hidden_dim, -1).permute(0, 2, 1)  # tokens
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.encoder(x)
        return self.heads(x[:, 0])


def build_torchvision_vit(
    image_size: int = 32, patch_size: int = 4, num_layers: int = 2, num_heads: int = 2, hidden_dim: int = 64,
    mlp_dim: int = 128, num_classes: int = 10, in_channels: int = 3,
) -> TorchvisionViT:
    """A torchvision-structured ViT (defaults: the reduced size the tests and LXT's cross-check use)."""
    return TorchvisionViT(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes,
                          in_channels=in_channels)


# -- timm's structure ---------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """timm's Attention: qkv Linear, ``F.scaled_dot_product_attention``, proj Linear."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.drop1 = nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0)
        self.fc2, self.drop2 = nn.Linear(hidden, dim), nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1, self.attn = _LayerNorm(dim), Attention(dim, num_heads)
        self.norm2, self.mlp = _LayerNorm(dim), Mlp(dim, mlp_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TimmViT(nn.Module):
    """timm's ``VisionTransformer`` (class token, learned position embedding, token pooling)."""

    def __init__(
        self, image_size: int, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int,
        num_classes: int = 10, in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, in_channels, hidden_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (image_size // patch_size) ** 2 + 1, hidden_dim) * 0.02)
        self.pos_drop = nn.Dropout(0.0)
        self.blocks = nn.Sequential(*(Block(hidden_dim, num_heads, mlp_dim) for _ in range(num_layers)))
        self.norm = _LayerNorm(hidden_dim)
        self.head = nn.Linear(hidden_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.norm(self.blocks(self.pos_drop(x + self.pos_embed)))
        return self.head(x[:, 0])


def build_timm_vit(
    image_size: int = 32, patch_size: int = 4, num_layers: int = 2, num_heads: int = 2, hidden_dim: int = 64,
    mlp_dim: int = 128, num_classes: int = 10, in_channels: int = 3,
) -> TimmViT:
    """A timm-structured ViT/DeiT (same defaults as :func:`build_torchvision_vit`)."""
    return TimmViT(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes, in_channels)


def timm_state_dict(torchvision_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision-structured ViT's state dict under timm's names (q, k, v are packed in the same
    order in ``in_proj_weight`` and ``qkv.weight``)."""
    renames = {
        "conv_proj.": "patch_embed.proj.", "class_token": "cls_token", "encoder.pos_embedding": "pos_embed",
        "encoder.ln.": "norm.", "heads.head.": "head.",
    }
    block = {
        "ln_1.": "norm1.", "ln_2.": "norm2.", "self_attention.in_proj_weight": "attn.qkv.weight",
        "self_attention.in_proj_bias": "attn.qkv.bias", "self_attention.out_proj.": "attn.proj.",
        "mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2.",
    }
    out: dict[str, Tensor] = {}
    for key, value in torchvision_state.items():
        new = key
        if key.startswith("encoder.layers.encoder_layer_"):
            index, rest = key.removeprefix("encoder.layers.encoder_layer_").split(".", 1)
            for old, replacement in block.items():
                if rest.startswith(old):
                    rest = replacement + rest.removeprefix(old)
                    break
            new = f"blocks.{index}.{rest}"
        else:
            for old, replacement in renames.items():
                if key.startswith(old):
                    new = replacement + key.removeprefix(old)
                    break
        out[new] = value
    return out
