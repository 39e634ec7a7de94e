"""Small models for the metric tests (pure torch: also imported inside .venv-quantus)."""

from __future__ import annotations

import torch
from torch import nn


def odd_cnn() -> nn.Sequential:
    """3 channels, 10×7 inputs, 5 classes: patch sizes that do not divide the sides exercise the padding."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 10 * 7, 5),
    )
