"""Damage to committed shards is found (quick: presence and sizes; deep: decoding, rows, checksums),
un-committed, and redone; summaries/ holds Parquet parts only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from lrp_tasks.store import AuditStore, check_committed_shards, open_audit

from .store_helpers import make_spec, shard_arrays, write_all

CHUNK = Path("relevance.zarr") / "relevance" / "c.2.0.0.0"  # first chunk of shard 1 (chunks of 2, shards of 4)
PART = Path("summaries") / "part-000001.parquet"


def finished(tmp_path: Path) -> AuditStore:
    store = AuditStore.create_or_open(tmp_path, make_spec())
    write_all(store)
    return store


def delete(path: Path) -> None:
    path.unlink()


def empty(path: Path) -> None:
    path.write_bytes(b"")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("target", "damage", "quick_finds", "message"),
    [
        (CHUNK, delete, True, "chunk relevance/c.2.0.0.0 is missing"),
        (CHUNK, empty, True, "chunk relevance/c.2.0.0.0 has 0 bytes"),
        (PART, truncate, True, "Parquet part part-000001.parquet has"),
        (CHUNK, flip_a_byte, False, "chunk relevance/c.2.0.0.0 differs from its record (CRC-32)"),
        (PART, flip_a_byte, False, "Parquet part part-000001.parquet differs from its record (sha256)"),
    ],
)
def test_damage_is_found_uncommitted_and_redone(tmp_path, target, damage, quick_finds, message) -> None:
    store = finished(tmp_path)
    damage(tmp_path / target)
    deep = check_committed_shards(str(tmp_path), deep=True)
    assert list(deep.damaged) == [1] and any(message in p for p in deep.damaged[1]), deep.damaged
    quick = store.check_committed(deep=False)
    assert (list(quick) == [1]) if quick_finds else (quick == {})

    redone = store.redo_damaged(deep=True)
    assert list(redone) == [1]
    assert store.committed_shards() == {0, 2}
    assert open_audit(str(tmp_path)).committed_shards == {0, 2}  # readers stop seeing it at once
    write_all(store, only={1})  # the next run redoes it
    assert check_committed_shards(str(tmp_path)).ok
    np.testing.assert_array_equal(
        open_audit(str(tmp_path)).relevance.values, shard_arrays(store.spec, 0, 10)["relevance"]
    )


def test_an_unreadable_part_without_record_is_uncommitted_on_open(tmp_path) -> None:
    store = finished(tmp_path)
    store.close()
    (tmp_path / "manifest" / "shard-000001.json").unlink()
    truncate(tmp_path / PART)
    again = AuditStore.create_or_open(tmp_path, make_spec())  # used to fail with a Parquet traceback
    assert again.committed_shards() == {0, 2}
    assert list(again.redo_damaged()) == [1]


def test_summaries_hold_only_parts_and_a_stray_file_is_reported(tmp_path) -> None:
    store = finished(tmp_path)
    assert sorted(p.name for p in (tmp_path / "summaries").iterdir()) == [
        "part-000000.parquet",
        "part-000001.parquet",
        "part-000002.parquet",
    ]
    assert len(pd.read_parquet(tmp_path / "summaries")) == 10
    (tmp_path / "summaries" / "notes.txt").write_text("a user's file")
    report = check_committed_shards(str(tmp_path))
    assert not report.ok and report.damaged == {}
    assert "summaries/notes.txt is not a Parquet part" in report.store_problems[0]
    assert store.check_committed() == {}


def test_verify_command_reports_and_repairs(tmp_path, capsys) -> None:
    store = finished(tmp_path)
    store.close()
    assert main(["verify", str(tmp_path)]) == 0
    assert "ok: 3 committed shard(s) sound" in capsys.readouterr().out

    delete(tmp_path / CHUNK)
    assert main(["verify", str(tmp_path), "--quick"]) == 1
    out = capsys.readouterr().out
    assert "shard 1: DAMAGED: chunk relevance/c.2.0.0.0 is missing" in out and "--repair" in out

    assert main(["verify", str(tmp_path), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "un-committed 1 damaged shard(s) [1]" in out
    assert open_audit(str(tmp_path)).committed_shards == {0, 2}
    assert main(["verify", str(tmp_path)]) == 0
    assert main(["verify", str(tmp_path / "nothing-here")]) == 1
    assert "no audit store" in capsys.readouterr().err
