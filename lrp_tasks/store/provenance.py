"""Package versions and timestamps recorded with an audit, so a result can be traced to its software."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import platform

_PACKAGES = ("torch", "zarr", "numpy", "pandas", "pyarrow", "xarray", "numcodecs")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def package_versions() -> dict[str, str]:
    """Versions read from package metadata: importing torch only to print its version would be slow."""
    return dict(_package_versions())


@functools.cache
def _package_versions() -> dict[str, str]:
    # Installed versions do not change under a running process; reading metadata takes ~20 ms.
    versions = {name: _version(name) for name in _PACKAGES}
    versions["python"] = platform.python_version()
    lrp = _version("lrp-audit")
    # Running from a checkout without `pip install -e .` leaves no metadata to read.
    versions["lrp-audit"] = "unknown (checkout, not installed)" if lrp == "not installed" else lrp
    return versions


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def utc_now_iso() -> str:
    """ISO-8601 UTC timestamp with microseconds, e.g. '2026-01-31T12:00:00.123456+00:00'."""
    return utc_now().isoformat(timespec="microseconds")
