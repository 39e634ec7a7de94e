"""Every check an audit run makes before its workers start, in one function: ``lrp-audit validate``,
the command line's pre-flight and the flow's store preparation all call :func:`prepare_audit`, so a
config that validates runs.

The checks: the schema (done when the config was loaded), the files and folders it names, the
model (built, weights loaded strictly, accepted by the LRP engine with the composite), one sample
read and explained (layer names of ``storage.layerwise`` and ``storage.crp``, CRP features, target
class or k against the number of classes). Every failure is a ``ConfigError`` naming the config
file and the field."""

from __future__ import annotations

from pathlib import Path

from lrp_tasks.config import AuditConfig, ConfigError, FieldError, check_files, config_digest
from lrp_tasks.engine import GraphTraceError, InvalidRuleError, ModelCheckError, RuleLayerMismatchError
from lrp_tasks.shard import ShardExplainer, audit_config_for_workers
from lrp_tasks.sources import DatasetError, ModelLoadError

RESULT_NEUTRAL_FIELDS = ("output", "ray", "retries")
"""Top-level fields that do not change what an audit computes: left out of the digest that a store
is resumed by, so ``--workers``, ``--ray-address`` or a moved output directory resume the same store."""


def audit_digest(cfg: AuditConfig) -> str:
    """The digest a store records and checks on resume: the config as written, minus
    ``RESULT_NEUTRAL_FIELDS``."""
    return config_digest(cfg, exclude=RESULT_NEUTRAL_FIELDS)


def prepare_audit(
    cfg: AuditConfig,
    *,
    root: str | Path | None = None,
    source: str | None = None,
    digest: str | None = None,
    store_mode: str | None = None,
    device: str | None = None,
) -> ShardExplainer:
    """Run every check of an audit; with ``store_mode`` (``resume``/``overwrite``) also create or
    reopen its store.

    root: the directory relative paths resolve against (the config file's directory; None: the
    working directory). source: how errors name the config (its file). Returns the explainer: the
    model loaded once, its analyzer, the dataset, the store spec (and the store when opened)."""
    source = source or f"audit config {cfg.name!r}"
    try:
        check_files(cfg, root=root, source=source)
        return ShardExplainer(
            audit_config_for_workers(cfg, root),
            digest=digest or audit_digest(cfg),
            device=device,
            create_mode=store_mode or "resume",
            open_store=store_mode is not None,
        )
    except ConfigError as exc:
        raise ConfigError(source, exc.errors) from None
    except (ModelLoadError, ModelCheckError, GraphTraceError) as exc:
        raise ConfigError(source, [FieldError("model", _one_paragraph(exc))]) from None
    except (InvalidRuleError, RuleLayerMismatchError) as exc:
        raise ConfigError(source, [FieldError("composite", _one_paragraph(exc))]) from None
    except DatasetError as exc:
        raise ConfigError(source, [FieldError("dataset", _one_paragraph(exc))]) from None


def _one_paragraph(exc: BaseException) -> str:
    """The exception's message, indented under the field it is about when it spans lines."""
    return str(exc).strip().replace("\n", "\n    ")
