"""The ``metrics:`` section: defaults, every setting validated with the field path and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lrp_tasks.config import ConfigError, load_config
from lrp_tasks.config.metrics import MetricsSpec

ROOT = Path(__file__).resolve().parents[1]


def load_with(tmp_path: Path, metrics: Any):
    data = yaml.safe_load((ROOT / "conf" / "demo.yaml").read_text())
    data["metrics"] = metrics
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


def test_metrics_are_off_by_default_and_settings_have_defaults(tmp_path) -> None:
    assert MetricsSpec().perturbation_enabled is False
    cfg = load_with(tmp_path, {"region_perturbation": {"steps": 4}, "efficient_mprt": {}})
    rp = cfg.metrics.region_perturbation
    assert (rp.patch_size, rp.steps, rp.orders, rp.baseline, rp.seed) == (8, 4, ["morf", "lerf", "random"], "black", 0)
    assert cfg.metrics.pixel_flipping is None and cfg.metrics.perturbation_enabled
    mprt = cfg.metrics.efficient_mprt
    assert (mprt.samples, mprt.seed, mprt.n_bins) == (64, 0, 100)
    assert cfg.metrics.batch_size == 1024


BAD = [
    ({"region_perturbation": {"steps": 0}}, "metrics.region_perturbation.steps", "greater than 0"),
    ({"region_perturbation": {}}, "metrics.region_perturbation.steps", "required field is missing"),
    (
        {"region_perturbation": {"steps": 4, "patch_size": 0}},
        "metrics.region_perturbation.patch_size",
        "greater than 0",
    ),
    (
        {"region_perturbation": {"steps": 4, "orders": ["morf", "best"]}},
        "metrics.region_perturbation.orders[1]",
        "'morf', 'lerf' or 'random'",
    ),
    ({"region_perturbation": {"steps": 4, "orders": []}}, "metrics.region_perturbation.orders", "at least one order"),
    (
        {"region_perturbation": {"steps": 4, "orders": ["morf", "morf"]}},
        "metrics.region_perturbation.orders",
        "must not repeat: morf",
    ),
    ({"pixel_flipping": {"steps": 4, "baseline": "white"}}, "metrics.pixel_flipping.baseline", "'uniform'"),
    (
        {"pixel_flipping": {"steps": 4, "patch_size": 2}},
        "metrics.pixel_flipping.patch_size",
        "unknown key 'patch_size'",
    ),
    ({"pixel_flipping": {"steps": 4, "seed": -1}}, "metrics.pixel_flipping.seed", "greater than or equal to 0"),
    ({"pixel_flipping": {"steps": True}}, "metrics.pixel_flipping.steps", "valid integer"),
    ({"efficient_mprt": {"n_bins": 1}}, "metrics.efficient_mprt.n_bins", "greater than or equal to 2"),
    ({"efficient_mprt": {"samples": 0}}, "metrics.efficient_mprt.samples", "greater than 0"),
    ({"batch_size": 0}, "metrics.batch_size", "greater than 0"),
    ({"faithfulness": {}}, "metrics.faithfulness", "unknown key 'faithfulness'"),
]


@pytest.mark.parametrize(("metrics", "field", "reason"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_metric_settings_name_the_field_and_reason(tmp_path, metrics, field, reason) -> None:
    with pytest.raises(ConfigError) as info:
        load_with(tmp_path, metrics)
    assert [e.field for e in info.value.errors] == [field], str(info.value)
    assert reason in str(info.value)
