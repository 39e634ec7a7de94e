"""The smallest real audit config: the committed demo CNN on the 360 digits of the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def digits_audit_config(output: Path, name: str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "output": str(output),
        "model": {
            "kind": "builder",
            "builder": "lrp_tasks.models.digits:build_digits_cnn",
            "weights": str(ROOT / "models" / "digits_cnn.safetensors"),
        },
        "dataset": {"kind": "digits", "split": "test"},
        "composite": "EpsilonPlusFlat",
    }
    cfg.update(overrides)
    return cfg
