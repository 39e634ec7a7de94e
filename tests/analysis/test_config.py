"""The ``analysis:`` config section: validated, and invisible to the audit's shard digest."""

from __future__ import annotations

import pytest

from lrp_tasks.config import ConfigError, config_digest, load_config, parse_config
from tests.digits_audit import ROOT, digits_audit_config


def test_a_config_without_analysis_serializes_as_before(tmp_path):
    cfg = parse_config(digits_audit_config(tmp_path, "a"))
    assert "analysis" not in cfg.model_dump(mode="json")  # digests of existing audits do not change


def test_the_analysis_section_does_not_change_the_shard_digest(tmp_path):
    plain = parse_config(digits_audit_config(tmp_path, "a"))
    with_spray = parse_config(digits_audit_config(tmp_path, "a", analysis={"spray": {"k": 4, "by": "label"}}))
    assert with_spray.analysis.spray.k == 4
    assert config_digest(with_spray, exclude=("analysis",)) == config_digest(plain, exclude=("analysis",))
    assert config_digest(with_spray) != config_digest(plain)


@pytest.mark.parametrize(
    ("spray", "field"),
    [({"k": 1}, "analysis.spray.k"), ({"k_min": 6, "k_max": 3}, "analysis.spray"), ({"colour": 1}, "colour")],
)
def test_bad_spray_settings_name_the_field(tmp_path, spray, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config(digits_audit_config(tmp_path, "a", analysis={"spray": spray}), source="x.yaml")


def test_conf_planted_parses_with_its_analysis_section():
    cfg = load_config(ROOT / "conf" / "planted.yaml")
    assert cfg.analysis.spray.by == "predicted" and cfg.analysis.spray.k == "auto"
