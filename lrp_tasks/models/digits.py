"""The demo model: a small CNN for scikit-learn's 1×8×8 digits, trained by scripts/train_digits.py.

A plain ``nn.Sequential`` with named layers, so configs can address layers by name
(``conv2``, ``fc1``) and every layer is one the LRP engine has rules for.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10


def build_digits_cnn(num_classes: int = NUM_CLASSES, dropout: float = 0.25) -> nn.Sequential:
    """Conv(1→16)→BN→ReLU→Conv(16→32)→BN→ReLU→MaxPool→Flatten→Linear(512→64)→ReLU→Dropout→Linear(64→10)."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 16, kernel_size=3, padding=1),
            bn1=nn.BatchNorm2d(16),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(16, 32, kernel_size=3, padding=1),
            bn2=nn.BatchNorm2d(32),
            relu2=nn.ReLU(),
            pool=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(32 * 4 * 4, 64),
            relu3=nn.ReLU(),
            dropout=nn.Dropout(dropout),
            fc2=nn.Linear(64, num_classes),
        )
    )
