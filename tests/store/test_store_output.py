"""One line, and no temporary left, when a result cannot be written or a store cannot be read
(issue 19, item 6). The full disk is a real one: a tiny tmpfs (needs root to mount)."""

from __future__ import annotations

import uuid

import pytest

from flows.cli.main import main
from lrp_tasks.store import AuditStore
from tests.disk_helpers import files_under, fill, tmpfs

from .store_helpers import make_spec, write_all

CONFIG = {"model": {"builder": "tiny"}, "dataset": {"kind": "array"}, "composite": "epsilon_plus"}


def _audit(root, audit_id: str = "audit-test") -> None:
    store = AuditStore.create_or_open(root, make_spec(config=CONFIG, audit_id=audit_id, keep_input=True))
    write_all(store)
    store.close()


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MiB tmpfs holding two small audits, then filled to the last byte."""
    with tmpfs(tmp_path / "disk") as mnt:
        _audit(mnt / "a", "audit-a")
        _audit(mnt / "b", "audit-b")
        fill(mnt)
        yield mnt


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "{a}"],
        ["report", "{a}", "-o", "{disk}/out/report.html"],
        ["compare", "{a}", "{b}", "-o", "{disk}/cmp"],
        ["heatmaps", "{a}", "--top", "4", "-o", "{disk}/heat"],
        ["spray", "{a}", "--no-ray", "--k", "2"],
        ["export", "virelay", "{a}", "{disk}/viewer"],
    ],
    ids=["report-in-store", "report-o", "compare-o", "heatmaps-o", "spray", "export-virelay"],
)
def test_a_full_disk_is_one_line_and_leaves_no_temporary(full_disk, argv, capsys) -> None:
    before = files_under(full_disk)
    args = [a.format(a=full_disk / "a", b=full_disk / "b", disk=full_disk) for a in argv]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "Traceback" not in err, err
    assert "unexpected" not in err and str(full_disk) in err, err  # the disk's error, naming the file
    assert files_under(full_disk) == before  # no report.html.tmp, no .tmp beside the -o target, no half PNG


def test_summary_of_a_damaged_store_says_run_verify(tmp_path, capsys) -> None:
    root = tmp_path / f"audit-{uuid.uuid4().hex[:6]}"
    _audit(root)
    (root / "summaries" / "part-000001.parquet").write_bytes(b"not parquet at all")
    assert main(["summary", str(root)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"run `lrp-audit verify {root}`" in err, err
