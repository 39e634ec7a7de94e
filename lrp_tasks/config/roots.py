"""Where a config submitted through a deployment's form may read and write.

A config file on the worker is its owner's, as trusted as the worker's own code; the typed ``config``
parameter of a deployment is not: anyone with access to the Prefect UI or API fills it in. Its paths
(output, dataset, labels, weights, a builder's folder, the audit to compare with) must lie under the
allowed roots — the deployment's working directory (where its flow runs start), widened by
``LRP_AUDIT_ALLOWED_ROOTS`` (folders separated by ``os.pathsep``) — after ``..``, ``~`` and every
symlink are resolved; remote URLs are refused. The flow's ``base_dir`` parameter (where relative
paths start) is a form field too, so it must lie under the roots as well: it never widens them. The
check runs before anything is created or opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from .audit import AuditConfig
from .errors import ConfigError, FieldError
from .io import is_url, local_paths, resolve_path

ROOTS_ENV = "LRP_AUDIT_ALLOWED_ROOTS"


def allowed_roots(base: str | Path) -> list[Path]:
    """The deployment's working directory and the folders of ``LRP_AUDIT_ALLOWED_ROOTS``, resolved."""
    extra = [p for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(os.path.realpath(Path(p).expanduser())) for p in [str(base), *extra]]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def check_under_roots(
    cfg: AuditConfig,
    base: str | Path,
    workdir: str | Path | None = None,
    source: str = "the deployment's config form",
    **extra: str | None,
) -> None:
    """Raise ``ConfigError`` (one line per field) for every path of `cfg` and of `extra` (``base_dir``,
    ``compare_with``), relative ones resolved against `base`, that lies outside the allowed roots of
    `workdir` (default: the working directory) once ``..``, ``~`` and symlinks are resolved."""
    roots = allowed_roots(Path.cwd() if workdir is None else workdir)
    paths = {**local_paths(cfg), **{k: v for k, v in extra.items() if v}}
    errors = []
    for field, path in paths.items():
        if is_url(path):
            errors.append(FieldError(field, f"{path!r}: a remote URL is not allowed from the form (give it in a "
                                            "config file on the worker)"))
            continue
        real = Path(os.path.realpath(resolve_path(path, base)))
        if not _inside(real, roots):
            errors.append(FieldError(
                field,
                f"{path!r} resolves to {real}, outside the allowed roots ({', '.join(map(str, roots))}); "
                f"a config from the form reads and writes only there (widen with {ROOTS_ENV} on the worker)",
            ))
    if errors:
        raise ConfigError(source, errors)
