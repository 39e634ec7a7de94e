"""``lrp-audit spray``: bad requests are refused by name before any Prefect server or Ray starts."""

from __future__ import annotations

import pytest

from flows.cli import build_parser, main
from lrp_tasks.analysis import SpraySpec, run_spray, spray_dir
from tests.analysis.spray_helpers import write_audit


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "audit"
    write_audit(path)
    return path


def test_options_parse():
    args = build_parser().parse_args(["spray", "a", "--classes", "3,5", "--by", "label", "--k", "4"])
    assert (args.classes, args.by, args.k) == ([3, 5], "label", 4)
    assert build_parser().parse_args(["spray", "a", "--k", "auto"]).k == "auto"
    for bad in (["--k", "1"], ["--k", "many"], ["--classes", "3,x"], ["--classes", "-1"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["spray", "a", *bad])


def test_unknown_class(audit, capsys):
    assert main(["spray", str(audit), "--classes", "1,9"]) == 1
    assert "unknown class(es) [9]: the model has 3 classes (0..2)" in capsys.readouterr().err
    assert not spray_dir(audit).exists()


def test_k_larger_than_the_class(tmp_path, capsys):
    write_audit(tmp_path / "small", n_samples=30, shard_size=30)  # 10 samples per class
    assert main(["spray", str(tmp_path / "small"), "--classes", "0", "--k", "12"]) == 1
    assert "k=12 clusters is more than the class holds (class 0: 10 samples)" in capsys.readouterr().err


def test_no_committed_shards(tmp_path, capsys):
    write_audit(tmp_path / "empty", shards=[])
    assert main(["spray", str(tmp_path / "empty")]) == 1
    assert "has no committed shards yet" in capsys.readouterr().err


def test_not_an_audit(tmp_path, capsys):
    assert main(["spray", str(tmp_path)]) == 1
    assert "no audit at" in capsys.readouterr().err


def test_a_changed_config_is_refused_naming_the_change(tmp_path, capsys):
    path = tmp_path / "audit"
    write_audit(path, n_samples=60, shard_size=30)
    run_spray(str(path), SpraySpec(classes=[0], layout="none", k_max=4))
    assert main(["spray", str(path), "--classes", "0", "--by", "label"]) == 1
    err = capsys.readouterr().err
    assert "another config" in err and "by: 'predicted' -> 'label'" in err and "--recompute" in err
