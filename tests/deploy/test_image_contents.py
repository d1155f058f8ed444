"""What deploy/Dockerfile installs is enough to run: no container engine here, so the test
builds the same wheel from exactly the files the Dockerfile copies (offline), unpacks it
away from the repository and runs `sealbox-server migrate` and `admin check` from it (the
migrations, alembic.ini and the script template must ship inside the package).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _build_stage_copies() -> list[str]:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    build = text.split("\nFROM ")[1]  # the first stage, up to the runtime stage
    sources: list[str] = []
    for line in build.splitlines():
        match = re.match(r"COPY (?!--)(.+) \S+$", line.strip())
        if match:
            sources += match.group(1).split()
    return sources


def test_the_wheel_the_image_installs_migrates_and_runs_outside_the_repo(tmp_path: Path) -> None:
    try:
        import hatchling  # noqa: F401
    except ImportError:
        pytest.skip("hatchling is not installed (the test extra brings it)")
    src = tmp_path / "src"
    src.mkdir()
    sources = _build_stage_copies()
    assert {"pyproject.toml", "README.md", "server", "migrations"} <= set(sources)
    for name in sources:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--wheel-dir", str(wheels), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("sealbox-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(site)
    for needed in (
        "migrations/alembic.ini",
        "migrations/env.py",
        "migrations/script.py.mako",
        "crypto/py.typed",
    ):
        assert needed in names, needed
    versions = {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert {f"migrations/versions/{v}" for v in versions} <= names

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALBOX_")}
    env.update(PYTHONPATH=str(site), SEALBOX_DATA_DIR=str(tmp_path / "data"))
    run = [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main())"]
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import server, migrations; print(server.__file__, migrations.__file__)",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.count(str(site)) == 2, where.stdout  # the unpacked wheel, not the repo
    done = subprocess.run(
        [*run, "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "database at revision" in done.stdout, done.stderr
    done = subprocess.run(
        [*run, "admin", "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "database: sqlite" in done.stdout, done.stderr
