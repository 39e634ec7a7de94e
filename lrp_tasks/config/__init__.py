"""Typed audit configuration: one YAML file describes one audit (see docs/config.md).

cfg = load_config("conf/demo.yaml")        # ConfigError on any problem: file, line, field, reason
check_files(cfg)                           # the files it names exist (separate: see io.py)
digest = config_digest(cfg)                # sha256 of the canonical JSON
"""

from .audit import (
    AuditConfig,
    ClassTarget,
    CRPSpec,
    LabelTarget,
    PredictedTarget,
    RaySpec,
    StorageSpec,
    TargetSpec,
    TopKTarget,
)
from .canonical import canonical_json
from .composite import (
    PRESET_SPECS,
    CompositeSpec,
    EpsilonAlpha2Beta1FlatSpec,
    EpsilonAlpha2Beta1Spec,
    EpsilonGammaBoxSpec,
    EpsilonPlusFlatSpec,
    EpsilonPlusSpec,
    PresetSpec,
    RuleEntry,
    RulesCompositeSpec,
)
from .dataset_spec import ArraySpec, DatasetSpec, DigitsSpec, ImageFolderSpec, Preprocessing, ZarrSpec
from .errors import ConfigError, FieldError
from .io import check_files, config_digest, config_dir, load_config, parse_config, resolve_paths
from .model_spec import BuilderModelSpec, ExportedModelSpec, ModelSpec
from .overrides import apply_overrides
from .rules import RULE_SPECS, RuleSpec, resolve_layer_type

__all__ = [
    "PRESET_SPECS",
    "RULE_SPECS",
    "ArraySpec",
    "AuditConfig",
    "BuilderModelSpec",
    "CRPSpec",
    "ClassTarget",
    "CompositeSpec",
    "ConfigError",
    "DatasetSpec",
    "DigitsSpec",
    "EpsilonAlpha2Beta1FlatSpec",
    "EpsilonAlpha2Beta1Spec",
    "EpsilonGammaBoxSpec",
    "EpsilonPlusFlatSpec",
    "EpsilonPlusSpec",
    "ExportedModelSpec",
    "FieldError",
    "ImageFolderSpec",
    "LabelTarget",
    "ModelSpec",
    "PredictedTarget",
    "Preprocessing",
    "PresetSpec",
    "RaySpec",
    "RuleEntry",
    "RuleSpec",
    "RulesCompositeSpec",
    "StorageSpec",
    "TargetSpec",
    "TopKTarget",
    "ZarrSpec",
    "apply_overrides",
    "canonical_json",
    "check_files",
    "config_digest",
    "config_dir",
    "load_config",
    "parse_config",
    "resolve_layer_type",
    "resolve_paths",
]
