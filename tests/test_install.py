"""The package as a new user gets it: the wheel, built from the checkout, installed without the test
extra into a fresh virtual environment, serving from an empty folder (pages, every module, a join).

Slow-ish (a wheel build and an install, 10-40 s): `pytest -m install` runs these alone,
`-m "not install"` leaves them out.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from .conftest import free_port

pytestmark = [pytest.mark.install, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent
WEB = "server/web/"  # where client_web/ lands in the wheel
DEV_ONLY = ["*.d.ts", "*.sh", "tsconfig*.json", "package.json", "package-lock.json", "node_modules/*", ".*"]


def _dev_only(relative: str) -> bool:
    return any(fnmatch.fnmatch(relative, pattern) for pattern in DEV_ONLY) or "/." in "/" + relative


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the checkout (a build in place would share build/ with any
    other build running, and a build/ left from an earlier one may hold files since removed)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules", "*.egg-info")
    for folder in ("server", "client_web"):
        shutil.copytree(ROOT / folder, source / folder, ignore=skip)
    out = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
        check=True,
        timeout=180,
    )
    (found,) = out.glob("skyclass-*.whl")
    return found


def test_the_wheel_holds_every_module_and_every_web_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "server").rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(modules - names)
    assert not missing, f"not in the wheel (a new package? add it to [tool.setuptools] packages): {missing}"
    web = ROOT / "client_web"
    files = {
        p.relative_to(web).as_posix()
        for p in web.rglob("*")
        if p.is_file() and "node_modules" not in p.parts and not _dev_only(p.relative_to(web).as_posix())
    }
    assert {"learn.html", "teach.html", "learn.js", "teach.js", "style.css"} <= files
    missing = sorted(f for f in files if WEB + f not in names)
    assert not missing, f"web client files not in the wheel (pyproject.toml's package-data): {missing}"
    shipped_dev = sorted(n for n in names if n.startswith(WEB) and _dev_only(n.removeprefix(WEB)))
    assert not shipped_dev, f"dev-only files in the wheel: {shipped_dev}"


@pytest.fixture(scope="module")
def fresh_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with nothing but the wheel and its runtime dependencies."""
    env = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        timeout=240,
        env=_clean_environment(),
    )
    return env


def _clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without what would lead the fresh one to the checkout or to this
    run's settings."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SKYCLASS_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    return kept | extra


def _python(env: Path, code: str, cwd: Path) -> str:
    done = subprocess.run(
        [str(env / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env=_clean_environment(),
        timeout=60,
    )
    return done.stdout.strip()


def test_the_fresh_environment_has_no_test_tools(fresh_env: Path, tmp_path: Path) -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    names = [re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0] for requirement in extra]
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def has(n):\n"
        "    try: m.distribution(n); return True\n"
        "    except m.PackageNotFoundError: return False\n"
        f"print(json.dumps([n for n in {names!r} if has(n)]))"
    )
    assert json.loads(_python(fresh_env, code, tmp_path)) == [], "the runtime dependencies pull in test tools"
    where = _python(fresh_env, "import server; print(server.__file__)", tmp_path)
    assert Path(where).is_relative_to(fresh_env), f"server imported from {where}, not the fresh environment"
    describe = _python(fresh_env, "from server.media import native; print(native.describe())", tmp_path)
    assert describe == "native fan-out: on", "the wheel's native fan-out step did not load"


@pytest.fixture
def installed_server(fresh_env: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`skyclass serve` of the fresh environment, started in an empty folder with the default
    (development) secret, stopped on the way out."""
    folder = tmp_path / "empty"
    folder.mkdir()
    environment = _clean_environment(SKYCLASS_DATA_DIR=str(tmp_path / "data"))
    port = free_port()
    log_path = tmp_path / "server.log"
    process = subprocess.Popen(
        [str(fresh_env / "bin" / "skyclass"), "serve", "--port", str(port), "--ice-address", "127.0.0.1"],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=folder,
        env=environment,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail("skyclass serve exited at start:\n" + log_path.read_text(errors="replace"))
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("skyclass serve did not answer within 60 s:\n" + log_path.read_text(errors="replace"))
            time.sleep(0.2)
        yield url, environment
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_the_installed_package_serves_pages_modules_and_joins(
    installed_server: tuple[str, dict[str, str]], fresh_env: Path, wheel: Path
) -> None:
    url, environment = installed_server
    for page in ("/", "/learn", "/teach", "/replay"):
        answer = httpx.get(url + page, timeout=10)
        assert answer.status_code == 200, page
        assert answer.headers["content-type"].startswith("text/html"), page
    shipped = zipfile.ZipFile(wheel)
    scripts = [n.removeprefix(WEB) for n in shipped.namelist() if n.startswith(WEB) and n.endswith(".js")]
    assert "learn.js" in scripts and "teach.js" in scripts
    for script in scripts:
        answer = httpx.get(f"{url}/static/{script}", timeout=10)
        assert answer.status_code == 200, script
        assert answer.content == shipped.read(WEB + script), script
    assert httpx.get(url + "/static/style.css", timeout=10).status_code == 200
    # the demo lesson was made at start, without numpy
    room = "install-check"

    def token_for(role: str, name: str, *more: str) -> str:
        command = [str(fresh_env / "bin" / "skyclass"), "token", "--room", room, "--role", role, "--name", name, *more]
        return subprocess.run(
            command, capture_output=True, text=True, check=True, env=environment, timeout=60
        ).stdout.strip()

    admin = {"Authorization": "Bearer " + token_for("admin", "ops", "--scope", "city")}
    assert "demo" in [r["id"] for r in httpx.get(url + "/api/recordings", headers=admin, timeout=10).json()]
    token = token_for("student", "Wei")
    with connect(url.replace("http", "ws", 1) + "/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "join", "room": room, "token": token}))
        deadline = time.monotonic() + 15
        while True:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            assert message["type"] != "error", message
            if message["type"] == "joined":
                break
    assert message["room"] == room and message["role"] == "student" and message["name"] == "Wei"
