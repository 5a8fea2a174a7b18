"""The layer rules of the package, checked on every import statement (``ast``, not runtime).

Imports point down only:

    protocol <- domain <- (storage, infra) <- providers <- (api, worker, callbacks)
             <- runtime <- cli

- ``protocol`` imports nothing of kling_gateway but itself; ``domain`` only protocol and itself.
  Both import the standard library less its I/O modules, and msgspec: no I/O library.
- ``client`` (the SDK) imports only protocol and itself, and of the outside world only the
  standard library and the SDK's own dependencies (``[project].dependencies``): it must run in
  an install without the server extra (tests/test_sdk_alone.py runs it there).
- nothing imports ``api`` but ``runtime``; api, worker and callbacks do not import each other.
- ``runtime`` (settings and the composition root) is imported by ``cli`` only. This includes
  ``runtime.settings``, also for annotations under ``TYPE_CHECKING``: a layer below gets the
  values it needs passed in (or a small config of its own, as ``KlingClientConfig``), so that
  it can be built and tested without the whole ``Settings``.
- the SDK and the fake upstream are leaves of their own: only ``cli`` imports them, and the fake
  (the outside world) shares nothing with the gateway but ``protocol``, so that a bug on the
  gateway's side cannot pass by agreeing with itself.

Edges that break a rule today are listed in ``KNOWN_VIOLATIONS`` with who removes them; the
list only shrinks: a new wrong edge fails, and so does an entry that no longer happens.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import kling_gateway

PACKAGE = Path(kling_gateway.__file__).resolve().parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"

# What each layer may import of kling_gateway (the root package, for `__version__`, is open to
# all). A layer missing here fails the test: a new package must be given its place.
ALLOWED: dict[str, frozenset[str]] = {
    "protocol": frozenset({"protocol"}),
    "domain": frozenset({"protocol", "domain"}),
    "storage": frozenset({"protocol", "domain", "storage", "infra"}),
    "infra": frozenset({"protocol", "domain", "storage", "infra"}),
    "providers": frozenset({"protocol", "domain", "storage", "infra", "providers"}),
    "api": frozenset({"protocol", "domain", "storage", "infra", "providers", "api"}),
    "worker": frozenset({"protocol", "domain", "storage", "infra", "providers", "worker"}),
    "callbacks": frozenset({"protocol", "domain", "storage", "infra", "providers", "callbacks"}),
    "runtime": frozenset(
        {"protocol", "domain", "storage", "infra", "providers", "api", "worker", "callbacks"}
        | {"runtime"}
    ),
    "cli": frozenset(
        {"protocol", "domain", "storage", "infra", "providers", "worker", "callbacks"}
        | {"runtime", "cli", "client", "fake_upstream"}
    ),
    "client": frozenset({"protocol", "client"}),
    "fake_upstream": frozenset({"protocol", "fake_upstream"}),
}
# Standard-library modules that do I/O (or run processes, threads of work, event loops).
IO_STDLIB = frozenset(
    {"asyncio", "socket", "ssl", "select", "selectors", "subprocess", "multiprocessing"}
    | {"concurrent", "sqlite3", "http", "urllib.request", "ftplib", "smtplib", "socketserver"}
    | {"shutil", "tempfile", "signal", "mmap", "fcntl"}
)
PURE_LAYERS = frozenset({"protocol", "domain"})
PURE_THIRD_PARTY = frozenset({"msgspec"})


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, "kling_gateway.api.routes.videos"
    target: str  # the imported module as resolved, "kling_gateway.worker.steps"
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(path: Path, root: Path) -> Iterator[Import]:
    """Every import anywhere in the file (functions and ``TYPE_CHECKING`` blocks included)."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            for name in _from_names(node, base, root):
                yield Import(module, name, node.lineno)


def _from_names(node: ast.ImportFrom, base: str, root: Path) -> list[str]:
    # `from kling_gateway import api` imports the subpackage `api`: name it (not the root).
    if base != root.name:
        return [base]
    subs = [
        a.name for a in node.names if (root / a.name).is_dir() or (root / f"{a.name}.py").exists()
    ]
    return [f"{base}.{name}" for name in subs] or [base]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def layer_of(module: str) -> str | None:
    """``kling_gateway.X...`` -> ``X``; ``None`` for the root package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _matches(name: str, prefixes: frozenset[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def sdk_dependencies(pyproject: Path) -> frozenset[str]:
    """The import names of ``[project].dependencies`` (all of them import as they are named)."""
    declared = tomllib.loads(pyproject.read_text("utf-8"))["project"]["dependencies"]
    names = (spec.split(";")[0].split("[")[0] for spec in declared)
    return frozenset(n.split(">")[0].split("=")[0].split("<")[0].strip() for n in names)


def wrong_way(imp: Import, root_name: str, sdk_deps: frozenset[str]) -> str | None:
    """Why this import breaks a rule, or ``None``."""
    source = layer_of(imp.module)
    if source is None:
        return None  # the root package: __version__ only
    if source not in ALLOWED:
        return f"`{source}` is no known layer: give it its place in ALLOWED"
    top = imp.target.partition(".")[0]
    if top == root_name:
        target = layer_of(imp.target)
        if target is None or target in ALLOWED[source]:
            return None
        return f"{source} may not import {target}"
    return _outside_world(source, imp.target, top, sdk_deps)


def _outside_world(source: str, target: str, top: str, sdk_deps: frozenset[str]) -> str | None:
    stdlib = top in sys.stdlib_module_names or top == "__future__"
    if source in PURE_LAYERS:
        if stdlib and not _matches(target, IO_STDLIB):
            return None
        if top in PURE_THIRD_PARTY:
            return None
        return f"{source} is pure: no I/O library ({target})"
    if source == "client" and not stdlib and top not in sdk_deps:
        return f"the SDK may use only its own dependencies {sorted(sdk_deps)}, not {target}"
    return None


def violations(root: Path, pyproject: Path) -> dict[tuple[str, str], str]:
    """``{(importer, imported): why}`` over every module under ``root``."""
    sdk_deps = sdk_dependencies(pyproject)
    found: dict[tuple[str, str], str] = {}
    for path in sorted(root.rglob("*.py")):
        for imp in imports_in(path, root):
            why = wrong_way(imp, root.name, sdk_deps)
            if why is not None:
                found[(imp.module, imp.target)] = f"{why} (line {imp.line})"
    return found


# Edges that break the rules today, each with the helper who removes it. Remove an entry when
# its edge is gone (the test says so); never add one: fix the import instead.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def test_imports_point_down_only() -> None:
    found = violations(PACKAGE, PYPROJECT)
    new = {edge: why for edge, why in found.items() if edge not in KNOWN_VIOLATIONS}
    assert not new, "imports pointing the wrong way:\n" + "\n".join(
        f"  {a} -> {b}: {why}" for (a, b), why in sorted(new.items())
    )


def test_the_allow_list_only_shrinks() -> None:
    found = violations(PACKAGE, PYPROJECT)
    fixed = sorted(edge for edge in KNOWN_VIOLATIONS if edge not in found)
    assert not fixed, "fixed: remove from KNOWN_VIOLATIONS:\n" + "\n".join(
        f"  {a} -> {b}" for a, b in fixed
    )


def test_every_layer_has_its_place() -> None:
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert layers == set(ALLOWED)


# -- the checker itself, on a made-up package -----------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "kling_gateway"
    layers = {f"{layer}/__init__.py": "" for layer in ALLOWED}
    for name, text in {"__init__.py": "", **layers, **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        path.write_text(text)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\ndependencies = ["httpx>=0.27", "msgspec[yaml]>=0.19; python_version>\'3\'"]\n'
    )
    return root


@pytest.mark.parametrize(
    ("where", "text", "edge"),
    [
        ("protocol/x.py", "from kling_gateway.storage import base", "kling_gateway.storage"),
        ("protocol/x.py", "import httpx", "httpx"),
        ("domain/x.py", "import asyncio.subprocess", "asyncio.subprocess"),
        ("domain/x.py", "from urllib.request import urlopen", "urllib.request"),
        ("domain/x.py", "def f():\n    import sqlite3\n", "sqlite3"),
        ("domain/x.py", "from ..infra import egress", "kling_gateway.infra"),
        ("worker/x.py", "from kling_gateway import api", "kling_gateway.api"),
        ("api/routes/x.py", "from ...worker.steps import f", "kling_gateway.worker.steps"),
        ("callbacks/x.py", "from ..runtime.settings import S", "kling_gateway.runtime.settings"),
        (
            "providers/x.py",
            "import typing\nif typing.TYPE_CHECKING:\n    from kling_gateway import cli",
            "kling_gateway.cli",
        ),
        ("storage/x.py", "import kling_gateway.providers.base", "kling_gateway.providers.base"),
        ("client/x.py", "import starlette", "starlette"),
        ("client/x.py", "from kling_gateway.domain import task", "kling_gateway.domain"),
        ("api/x.py", "from kling_gateway.client import Client", "kling_gateway.client"),
        ("fake_upstream/x.py", "from kling_gateway.providers import k", "kling_gateway.providers"),
        ("engine/x.py", "import json", "json"),
    ],
)  # fmt: skip
def test_the_checker_finds_a_wrong_edge(tmp_path: Path, where: str, text: str, edge: str) -> None:
    root = _package(tmp_path, {where: text})
    module = "kling_gateway." + where.removesuffix(".py").replace("/", ".")
    assert (module, edge) in violations(root, tmp_path / "pyproject.toml")


def test_the_checker_lets_the_right_edges_be(tmp_path: Path) -> None:
    files = {
        "protocol/x.py": "import email.utils, enum, math, time\nimport msgspec\nfrom . import y",
        "protocol/y.py": "from __future__ import annotations",
        "domain/x.py": "from urllib.parse import urlsplit\nfrom kling_gateway.protocol import x",
        "client/x.py": "import httpx, msgspec, asyncio\nfrom kling_gateway import __version__",
        "providers/x.py": "from kling_gateway.storage import base\nimport av",
        "runtime/x.py": "from kling_gateway.api import app\nfrom kling_gateway.worker import w",
        "cli/x.py": "from kling_gateway.runtime import x\nfrom kling_gateway.client import c",
        "api/x.py": "from kling_gateway.providers import x\nimport starlette",
    }
    root = _package(tmp_path, files)
    assert violations(root, tmp_path / "pyproject.toml") == {}
