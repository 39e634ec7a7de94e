"""``lrp-audit export virelay``: the files open with ViRelAy's own loader (``virelay.model.Project``,
run in .venv-virelay, created by ``bash scripts/setup.sh --with-virelay`` or ``--with-references``;
skipped without it, failed with ``CI=true``: tests/reference_venv.py) and
hold the audit's inputs, maps, logits and SpRAy results."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from flows.cli import main
from lrp_tasks.analysis import SpraySpec, read_spray, run_spray
from lrp_tasks.store import open_audit
from tests.analysis.spray_helpers import maps_for, write_audit
from tests.reference_venv import needs_venv, run_in_venv

ROOT = Path(__file__).resolve().parents[2]
needs_virelay = needs_venv("virelay")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("virelay")
    audit = base / "audit"
    write_audit(audit, n_samples=240, shard_size=40, shards=[0, 1, 2, 4, 5], keep_input=True)  # shard 3 missing
    run_spray(str(audit), SpraySpec(k_max=4))
    assert main(["export", "virelay", str(audit), str(base / "viewer")]) == 0
    return audit, base / "viewer"


@needs_virelay
def test_one_channel_maps_render_in_every_colour_map_of_the_viewer(tmp_path):
    audit = tmp_path / "audit"
    write_audit(audit, n_samples=60, shard_size=30, keep_input=True, channels=1)
    run_spray(str(audit), SpraySpec(k_max=3, n_eigval=6, layout="none"))
    assert main(["export", "virelay", str(audit), str(tmp_path / "viewer")]) == 0
    run_in_venv(
        "virelay",
        ROOT / "tests" / "analysis" / "virelay_load.py",
        str(tmp_path / "viewer" / "project.yaml"),
        str(tmp_path / "read.npz"),
        timeout=300,
        project_on_path=False,
    )
    read = dict(np.load(tmp_path / "read.npz"))
    meta = json.loads((tmp_path / "read.npz.json").read_text())
    assert read["attribution_data"].shape == (60, 16, 16, 2)  # the map and zeros: ViRelAy sums them
    np.testing.assert_array_equal(read["attribution_data"].sum(axis=-1), maps_for(np.arange(60), channels=1)[:, 0])
    assert len(meta["heatmaps"]) == 16 and set(meta["heatmaps"].values()) == {200}, meta["heatmaps"]


@needs_virelay
def test_virelay_loader_reads_the_audit_and_its_spray_results(exported, tmp_path):
    audit, viewer = exported
    run_in_venv(
        "virelay",
        ROOT / "tests" / "analysis" / "virelay_load.py",
        str(viewer / "project.yaml"),
        str(tmp_path / "read.npz"),
        timeout=300,
        project_on_path=False,
    )
    read = dict(np.load(tmp_path / "read.npz"))
    meta = json.loads((tmp_path / "read.npz.json").read_text())

    reader = open_audit(str(audit))
    top = reader.summaries[reader.summaries["target_rank"] == 0].sort_values("sample_index")
    samples = top["sample_index"].to_numpy()
    assert len(samples) == 200 and 130 not in samples  # shard 3 (120..159) is not committed
    np.testing.assert_array_equal(read["sample_label"], top["label"].to_numpy())
    assert read["sample_data"].shape == (200, 16, 16, 3) and read["sample_data"].dtype == np.uint8
    assert read["sample_data"][-1].mean() > read["sample_data"][0].mean()  # inputs grow with the index
    np.testing.assert_allclose(read["attribution_data"], np.moveaxis(maps_for(samples), 1, -1), rtol=0, atol=0)
    logits = np.zeros((200, 3), np.float32)
    logits[np.arange(200), samples % 3] = 5.0
    np.testing.assert_array_equal(read["attribution_prediction"], logits)
    assert read["heatmap"].shape == (16, 16, 3)

    assert set(meta["status"].values()) == {200}, meta["status"]  # its server's API serves every part
    assert len(meta["heatmaps"]) == 16 and set(meta["heatmaps"].values()) == {200}, meta["heatmaps"]
    served = meta["api_analyses"]["spray"]
    first = f"spray/{served['categoryName']}/{served['clusteringName']}/spectral"
    assert [p["attributionIndex"] for p in served["embedding"]] == read[first + "/index"].tolist()
    assert [p["cluster"] for p in served["embedding"]] == read[first + "/cluster"].tolist()
    np.testing.assert_allclose(served["eigenvalues"], read[first + "/eigenvalue"])

    spray = read_spray(str(audit))
    analyses = meta["analyses"]["spray"]
    assert meta["methods"] == ["spray"]
    assert sorted(analyses["categories"]) == ["0", "1", "2"]
    assert analyses["clusterings"] == ["kmeans-02", "kmeans-03", "kmeans-04"]  # ViRelAy's order: by k
    assert analyses["embeddings"] == ["spectral", "tsne"]
    for cls in (0, 1, 2):
        arrays = spray.arrays(cls)
        rows = spray.samples[spray.samples["class"] == cls].set_index("sample_index").loc[arrays["sample_index"]]
        eig = spray.eigenvalues[spray.eigenvalues["class"] == cls].sort_values("index")["eigenvalue"].to_numpy()
        for k in (2, 3, 4):
            key = f"spray/{cls}/kmeans-{k:02d}"
            np.testing.assert_array_equal(samples[read[key + "/spectral/index"]], arrays["sample_index"])
            np.testing.assert_array_equal(read[key + "/spectral/cluster"], rows[f"cluster_k{k}"].to_numpy())
            np.testing.assert_array_equal(read[key + "/spectral/embedding"], arrays["eigenvectors"])
            np.testing.assert_allclose(read[key + "/spectral/eigenvalue"], eig, rtol=1e-12)
            np.testing.assert_array_equal(read[key + "/tsne/embedding"], rows[["x", "y"]].to_numpy())
            assert f"{key}/tsne/eigenvalue" not in read
        # the planted corner strategy is one cluster of the chosen k, as ViRelAy shows it
        chosen = int(rows["k"].iloc[0])
        clusters = read[f"spray/{cls}/kmeans-{chosen:02d}/spectral/cluster"]
        corner = (samples[read[f"spray/{cls}/kmeans-{chosen:02d}/spectral/index"]] // 3) % 4 == 0
        assert len(set(clusters[corner])) == 1 and clusters[corner][0] not in set(clusters[~corner])


def test_project_yaml_names_its_files(exported):
    _, viewer = exported
    project = yaml.safe_load((viewer / "project.yaml").read_text())["project"]
    assert project["dataset"] == {"name": "dataset", "type": "hdf5", "path": "input.h5"}
    assert project["attributions"]["sources"] == ["attribution.h5"]
    assert project["analyses"] == [{"analysis_method": "spray", "sources": ["analysis.h5"]}]
    labels = json.loads((viewer / "label-map.json").read_text())
    assert [entry["index"] for entry in labels] == [0, 1, 2]
    assert not [p for p in os.listdir(viewer) if p.startswith(".")]  # no temporaries left


def test_without_spray_results_the_project_has_no_analysis(tmp_path, capsys):
    write_audit(tmp_path / "audit", n_samples=80, keep_input=True)
    assert main(["export", "virelay", str(tmp_path / "audit"), str(tmp_path / "viewer")]) == 0
    assert "no SpRAy results" in capsys.readouterr().out
    project = yaml.safe_load((tmp_path / "viewer" / "project.yaml").read_text())["project"]
    assert "analyses" not in project and not (tmp_path / "viewer" / "analysis.h5").exists()


def test_an_audit_without_inputs_is_refused(tmp_path, capsys):
    write_audit(tmp_path / "audit", n_samples=80)
    assert main(["export", "virelay", str(tmp_path / "audit"), str(tmp_path / "viewer")]) == 1
    assert "storage.keep_input" in capsys.readouterr().err
    assert not (tmp_path / "viewer").exists()


def test_not_an_audit(tmp_path, capsys):
    assert main(["export", "virelay", str(tmp_path), str(tmp_path / "viewer")]) == 1
    assert "no audit" in capsys.readouterr().err


def test_the_command_runs_as_a_module(exported, tmp_path):
    audit, _ = exported
    proc = subprocess.run(
        [os.sys.executable, "-m", "flows", "export", "virelay", str(audit), str(tmp_path / "v")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SpRAy classes [0, 1, 2]" in proc.stdout and (tmp_path / "v" / "project.yaml").exists()
