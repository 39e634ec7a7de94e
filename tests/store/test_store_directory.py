"""Only audit directories are written or wiped: a user's files survive --fresh (mode='overwrite')."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrp_tasks.store import AuditStore, NotAnAuditError, open_audit

from .store_helpers import REPO_ROOT, make_spec, snapshot, write_all


def test_fresh_on_a_users_directory_is_refused_and_deletes_nothing(tmp_path) -> None:
    # The probe: a directory that merely has a folder called summaries/ is not an audit.
    (tmp_path / "summaries").mkdir()
    (tmp_path / "summaries" / "important.csv").write_text("data")
    before = snapshot(tmp_path)
    for mode in ("overwrite", "resume", "create"):
        with pytest.raises(NotAnAuditError, match=r"not empty and is not an lrp-audit store.*summaries"):
            AuditStore.create_or_open(tmp_path, make_spec(), mode=mode)
    assert snapshot(tmp_path) == before  # no marker, no lock file, nothing removed
    assert (tmp_path / "summaries" / "important.csv").read_text() == "data"


def test_a_non_empty_project_directory_is_refused_as_output(tmp_path) -> None:
    with pytest.raises(NotAnAuditError, match=r"not an lrp-audit store.*(conf|docs|flows)"):
        AuditStore.create_or_open(REPO_ROOT, make_spec())
    assert not (REPO_ROOT / "lrp-audit.json").exists() and not (REPO_ROOT / "lrp-audit.lock").exists()


def test_new_and_empty_directories_become_audits_with_a_marker(tmp_path) -> None:
    for path in (tmp_path / "new" / "nested", tmp_path / "empty"):
        if path.name == "empty":
            path.mkdir()
        store = AuditStore.create_or_open(path, make_spec())
        store.close()
        marker = json.loads((path / "lrp-audit.json").read_text())
        assert marker["lrp_audit_store"] == 1


def test_overwrite_removes_only_what_the_store_wrote(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store)
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "summaries" / "my-analysis.csv").write_text("mine")
    (tmp_path / "manifest" / "README").write_text("mine too")
    store.close()
    again = AuditStore.create_or_open(tmp_path, make_spec(dtype="float16"), mode="overwrite")
    assert again.committed_shards() == set()
    assert sorted(p.name for p in (tmp_path / "summaries").iterdir()) == ["my-analysis.csv"]
    assert sorted(p.name for p in (tmp_path / "manifest").iterdir()) == ["README"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert open_audit(str(tmp_path)).relevance.dtype == np.float16


def test_an_audit_written_before_the_marker_is_recognised(tmp_path) -> None:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store, only={0})
    store.close()
    (tmp_path / "lrp-audit.json").unlink()  # as audits written by earlier versions
    again = AuditStore.create_or_open(tmp_path, make_spec())
    assert again.committed_shards() == {0}
    assert (tmp_path / "lrp-audit.json").exists()
    again.close()
    (tmp_path / "lrp-audit.json").unlink()
    wiped = AuditStore.create_or_open(tmp_path, make_spec(), mode="overwrite")
    assert wiped.committed_shards() == set()


def test_the_empty_skeleton_of_a_cut_short_creation_is_reclaimed(tmp_path) -> None:
    for name in ("summaries", "manifest", "staging"):
        (tmp_path / name).mkdir()
    (tmp_path / "lrp-audit.lock").write_text("")
    AuditStore.create_or_open(tmp_path, make_spec()).close()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    with pytest.raises(NotAnAuditError):
        AuditStore.create_or_open(tmp_path / "other", make_spec())
