"""Issue 24: every resource and size field has a documented upper bound (lrp_tasks/config/limits.py),
refused by ``lrp-audit validate`` (so by ``run`` and the deployment's form) in one line naming the field,
with exit status 2 and no traceback; the bound itself is accepted and the form's schema shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cli import main
from lrp_tasks.config import AuditConfig, parse_config
from lrp_tasks.config.limits import LIMITS
from tests.digits_audit import digits_audit_config


def _with(field: str, value: Any, tmp_path: Path) -> dict[str, Any]:
    cfg = digits_audit_config(tmp_path / "audit", "bounds")
    if field == "metrics.batch_size":
        cfg["metrics"] = {"batch_size": value}
    elif field == "dataset.repeat":
        cfg["dataset"]["repeat"] = value
    elif field.startswith("ray."):
        cfg["ray"] = {field.removeprefix("ray."): value}
    else:
        cfg[field] = value
    return cfg


@pytest.mark.parametrize("field", list(LIMITS))
def test_a_value_beyond_the_bound_is_one_line_and_exit_2(field: str, tmp_path: Path, capsys) -> None:
    bound = LIMITS[field].bound
    too_big = bound * 10
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(_with(field, too_big, tmp_path)))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0] == "lrp-audit: invalid configuration" and len(lines) == 2, err
    assert f"{field}: {too_big}" in lines[1] and f"is more than {bound:,} (" in lines[1] and "Traceback" not in err


@pytest.mark.parametrize("field", list(LIMITS))
def test_the_bound_itself_is_accepted_and_shown_in_the_form(field: str, tmp_path: Path) -> None:
    parse_config(_with(field, LIMITS[field].bound, tmp_path))
    schema = AuditConfig.model_json_schema()
    maxima = {
        name: prop["maximum"]
        for definition in [schema, *schema["$defs"].values()]
        for name, prop in definition.get("properties", {}).items()
        if "maximum" in prop
    }
    assert maxima[field.rsplit(".", 1)[-1]] in {limit.bound for limit in LIMITS.values()}


@pytest.mark.parametrize("value", ["1e12", 2e20, 1e12])
def test_huge_shard_sizes_are_refused_in_one_line(value: Any, tmp_path: Path, capsys) -> None:
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(_with("shard_size", value, tmp_path)))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 2 and "shard_size" in err and "Traceback" not in err
