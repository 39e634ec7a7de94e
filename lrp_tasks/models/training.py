"""The one deterministic training loop of the committed models (``scripts/train_digits.py``,
``scripts/train_planted.py``, ``scripts/train_resnet_digits.py``).

Each script keeps only what is its own (the model builder, the data, the hyper-parameters, what
it measures afterwards); the steps that decide the bytes of the weights file are here, once:

1. :func:`make_deterministic`: ``torch.manual_seed(seed)``, one intra-op thread,
   ``torch.use_deterministic_algorithms(True)``;
2. the model is built *after* seeding (its initialisation draws from the seeded global generator);
3. AdamW (``weight_decay``) with a one-cycle schedule over ``epochs × ceil(n / batch_size)`` steps;
4. each epoch visits the training samples in the order of ``torch.randperm`` drawn from a
   separate generator seeded with the same seed, in batches of ``batch_size`` (the last one
   shorter); per batch: ``zero_grad``, cross-entropy, ``backward``, optimiser step, schedule step;
5. :func:`save_weights` writes the state dict as safetensors with ONE metadata entry
   (``lrp_audit``, sorted JSON): safetensors writes several entries in random order, and the
   file's sha256 is the model's fingerprint in audit results, so a retrain with the same torch
   on the same machine gives the same bytes.

An ``on_epoch`` callback (epoch number from 1, the model, the last batch's loss) runs after each
epoch's last step: for logging and evaluation only (it must not draw random numbers or change the
model; :func:`accuracy` puts the model in eval mode, the next epoch puts it back in train mode).

Imports only torch and numpy (safetensors, the weights format, is imported when saving).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

SEED = 0


@dataclass(frozen=True)
class TrainingSpec:
    """Hyper-parameters of :func:`train_classifier` (the scripts' defaults differ only in these)."""

    epochs: int
    batch_size: int = 32
    lr: float = 3e-3
    """Peak learning rate of the one-cycle schedule (also AdamW's initial lr)."""
    weight_decay: float = 1e-4
    seed: int = SEED

    def steps(self, n_samples: int) -> int:
        """Optimiser steps in the whole run: ``epochs × ceil(n_samples / batch_size)``."""
        return self.epochs * -(-n_samples // self.batch_size)


def make_deterministic(seed: int = SEED) -> None:
    """Seed torch's global generator, use one intra-op thread and deterministic algorithms."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


EpochCallback = Callable[[int, nn.Module, float], None]


def train_classifier(
    build: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    spec: TrainingSpec,
    on_epoch: EpochCallback | None = None,
) -> nn.Module:
    """Make torch deterministic, build the model, train it on ``(x, y)``; return it in eval mode.

    ``x`` and ``y`` are the whole training split as tensors (no torch random numbers may be drawn
    while preparing them after this call starts: there are none here, data come in prepared).
    """
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    make_deterministic(spec.seed)
    model = build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=spec.lr, total_steps=spec.steps(len(x)))
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(spec.seed)
    for epoch in range(spec.epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(order), spec.batch_size):
            batch = order[start : start + spec.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
        if on_epoch is not None:
            on_epoch(epoch + 1, model, loss.item())
    return model.eval()


def print_loss(epoch: int, model: nn.Module, loss: float) -> None:
    """The default progress line: ``epoch   3  loss 0.4562``."""
    print(f"epoch {epoch:3d}  loss {loss:.4f}")


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on ``(x, y)``."""
    model.eval()
    return (model(x).argmax(dim=1) == y).float().mean().item()


def save_weights(
    model: nn.Module, path: Path | str, *, builder: str, spec: TrainingSpec, info: Mapping[str, Any] | None = None
) -> Path:
    """Write the model's state dict to ``path`` (parents created) as safetensors, its training facts
    (``builder``, ``epochs``, ``seed``, ``torch`` version and ``info``) in the one metadata entry
    ``lrp_audit`` as JSON with sorted keys."""
    from safetensors.torch import save_file  # the weights format; imported here, not with the module

    path = Path(path)
    facts = {"builder": builder, "epochs": spec.epochs, "seed": spec.seed, "torch": torch.__version__, **(info or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"lrp_audit": json.dumps(facts, sort_keys=True)})
    return path
