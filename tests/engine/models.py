"""Small models shared by the engine tests, including the seed documents' CNN."""

from __future__ import annotations

import torch
from torch import nn


def seed_cnn(classes: int = 100, softmax: bool = False) -> nn.Sequential:
    """The CNN of the seed documents (3×32×32 input, BatchNorm after a conv and after a ReLU)."""
    head: list[nn.Module] = [nn.Flatten(), nn.Linear(2048, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, classes)]
    if softmax:
        head.append(nn.Softmax(dim=1))
    model = nn.Sequential(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 8, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        ),
        nn.Sequential(*head),
    )
    randomize_batchnorm(model)
    return model.eval()


def randomize_batchnorm(model: nn.Module) -> None:
    """Non-trivial running statistics, so BatchNorm fusion is actually exercised."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def relu_mlp(bias: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(10, 16, bias=bias), nn.ReLU(), nn.Linear(16, 16, bias=bias), nn.ReLU(), nn.Linear(16, 4, bias=bias)
    ).eval()


def relu_cnn(bias: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 8, bias=bias),
        nn.ReLU(),
        nn.Linear(8, 3, bias=bias),
    ).eval()
