"""`pip install kling-gateway` (no extra) is the SDK and the client commands, nothing more.

A fresh venv gets the wheel built from this tree, installed with its declared dependencies
(pinned by requirements.lock, as `make install` pins everything): the SDK must import there
without any server library, make a real call to a gateway (started from the main .venv, on
loopback), and the `kling-gateway` command must run its client commands and answer its server
commands with one line naming the `server` extra. Takes ~15 s: one venv for the module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.proc import cli, free_port, running

ROOT = Path(__file__).resolve().parent.parent
SERVER_MODULES = ("starlette", "uvicorn", "asyncpg", "av", "numpy", "PIL", "redis")
EXTRA_HINT = "pip install 'kling-gateway[server]'"


@dataclass
class SdkVenv:
    python: Path
    workdir: Path

    def run(
        self, *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        # cwd outside the tree and no PYTHONPATH: only what was installed can be imported.
        clean = {"PATH": "/usr/bin:/bin", "HOME": str(self.workdir), **(env or {})}
        return subprocess.run(
            argv, capture_output=True, text=True, cwd=self.workdir, env=clean, timeout=120
        )

    def python_code(self, code: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.python), "-c", code, env=env)

    def command(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.python.parent / "kling-gateway"), *args, env=env)


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--quiet", *args], check=True, timeout=300)


def _build_wheel(tmp: Path) -> Path:
    # A copy of the sources: building in the tree would leave (and later reuse) a build/ dir.
    source = tmp / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "kling_gateway", source / "kling_gateway", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(source))
    (wheel,) = (tmp / "dist").glob("kling_gateway-*.whl")
    return wheel


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> SdkVenv:
    tmp = tmp_path_factory.mktemp("sdk-alone")
    wheel = _build_wheel(tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The wheel's own dependencies, resolved by pip, at the versions of the lock.
    _pip("--python", str(python), "install", "-c", str(ROOT / "requirements.lock"), str(wheel))
    workdir = tmp / "work"
    workdir.mkdir()
    return SdkVenv(python, workdir)


@dataclass
class Served:
    url: str
    token: str


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("sdk-gateway")
    data = str(root / "data")
    token = cli("tokens", "create", "--user", "sdk", "--data-dir", data).strip()
    port = free_port()
    flags = ("--data-dir", data, "--local-delay", "0.2", "--local-max-side", "64")
    with running(*flags, "--no-bootstrap-token", port=port, log=root / "serve.log"):
        yield Served(f"http://127.0.0.1:{port}", token)


def test_the_sdk_imports_without_any_server_library(sdk: SdkVenv) -> None:
    probe = (
        "import importlib.util, json, kling_gateway.client as c;"
        f"print(json.dumps([c.__file__, [m for m in {SERVER_MODULES!r}"
        " if importlib.util.find_spec(m) is not None]]))"
    )
    done = sdk.python_code(probe)
    assert done.returncode == 0, done.stderr
    where, importable = json.loads(done.stdout)
    assert Path(where).is_relative_to(sdk.python.parent.parent)  # the installed copy
    assert importable == []


def test_an_sdk_call_against_a_real_gateway(sdk: SdkVenv, gateway: Served) -> None:
    code = (
        "import json, os; from kling_gateway.client import Client\n"
        "with Client(os.environ['URL'], token=os.environ['TOKEN']) as client:\n"
        "    created = client.videos.create('a mug', async_=True)\n"
        "    record = client.tasks.wait(created['task_id'], timeout=60)\n"
        "print(json.dumps([created, record]))\n"
    )
    done = sdk.python_code(code, URL=gateway.url, TOKEN=gateway.token)
    assert done.returncode == 0, done.stderr
    created, record = json.loads(done.stdout)
    assert record["id"] == created["task_id"]
    assert record["response"]["state"] == "succeed"
    assert record["request"]["prompt"] == "a mug"


def test_the_client_commands_run_in_the_sdk_install(sdk: SdkVenv, gateway: Served) -> None:
    env = {"KLING_GATEWAY_URL": gateway.url, "KLING_GATEWAY_TOKEN": gateway.token}
    created = sdk.command("videos", "create", "a cup", "--mode", "std", **env)
    assert created.returncode == 0, created.stderr
    task_id = json.loads(created.stdout)["task_id"]
    got = sdk.command("tasks", "get", task_id, **env)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["id"] == task_id


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["worker"],
        ["migrate"],
        ["tokens", "list"],
        ["callbacks", "list"],
        ["fake-upstream", "--port", "0"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_server_commands_name_the_extra_in_one_line(sdk: SdkVenv, argv: list[str]) -> None:
    done = sdk.command(*argv)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert EXTRA_HINT in done.stderr and argv[0] in done.stderr
    assert "Traceback" not in done.stderr
