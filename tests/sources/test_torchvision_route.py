"""docs/config.md's torchvision route (``builder: torchvision.models:resnet50`` + a weights file)
explained by the engine. torchvision cannot be loaded beside this project's CPU torch wheel from
PyPI, so the check runs in ``.venv-zennit`` (torch + matching torchvision), like the zennit
cross-check."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reference_venv import needs_venv, run_json_lines


@pytest.mark.integration
@needs_venv("zennit")
def test_torchvision_resnet50_from_a_state_dict_is_explained() -> None:
    row = run_json_lines("zennit", Path(__file__).with_name("torchvision_route.py"), timeout=600)[-1]
    assert row["analyzer"] == "LRP" and row["shape"] == [2, 3, 64, 64]  # one analyzer for every model
    assert row["finite"] and row["same_logits"], row
