"""``lrp-audit export virelay AUDIT DIR``: an audit and its SpRAy results as a ViRelAy project.

    lrp-audit export virelay audits/planted viewer/     # then: virelay viewer/project.yaml

Writes ``DIR/project.yaml`` and the input, attribution and analysis HDF5 files it names (see
docs/spray.md). The audit must have kept its inputs (``storage.keep_input: true``); the analysis file
holds the SpRAy classes the audit has (``lrp-audit spray AUDIT`` first), else it is left out.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_export_virelay(args: argparse.Namespace) -> int:
    from lrp_tasks.analysis.results import SprayStoreError
    from lrp_tasks.analysis.virelay import VirelayExportError, export_virelay
    from lrp_tasks.store import AuditStoreError

    try:
        result = export_virelay(args.audit, args.directory)
    except (VirelayExportError, AuditStoreError, SprayStoreError, FileNotFoundError) as exc:
        print(f"lrp-audit: {exc}", file=sys.stderr)
        return 1
    classes = result["spray_classes"]
    analysis = f"SpRAy classes {classes}" if classes else "no SpRAy results (run `lrp-audit spray` first to add them)"
    print(f"wrote {result['project']}: {result['samples']} samples, {analysis}")
    print(f"open it with: virelay {result['project']}")
    return 0


def add_parser(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="export an audit for other tools",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    targets = export.add_subparsers(dest="target", required=True)
    virelay = targets.add_parser("virelay", help="write a ViRelAy project (HDF5 files + project.yaml) into DIR")
    virelay.add_argument("audit", help="the audit directory")
    virelay.add_argument("directory", help="where to write project.yaml and its files (created if missing)")
    virelay.set_defaults(func=cmd_export_virelay)
