"""The package's parts import each other in one direction only (read from the source, not run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "unetdyn"
CORE = {"noise", "interventions", "unet", "sampler", "metrics", "cost", "viz", "fileio", "paths"}


def part(module: str) -> str:
    """``unetdyn.paper.sweeps`` -> ``paper``; a top-level core module -> ``core``."""
    name = module.split(".")[1] if module.count(".") else ""
    if name in ("paper", "backends", "builtin_model"):
        return name
    return "core" if name in CORE else name


def imports() -> list[tuple[str, str]]:
    """(importing module, imported unetdyn module) for every import in the package, lazy ones included."""
    found = []
    for f in PKG.rglob("*.py"):
        mod = "unetdyn." + ".".join(f.relative_to(PKG).with_suffix("").parts)
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unetdyn"):
                targets = [node.module] if node.module != "unetdyn" else [f"unetdyn.{a.name}" for a in node.names]
                found += [(mod, t) for t in targets]
            elif isinstance(node, ast.Import):
                found += [(mod, a.name) for a in node.names if a.name.startswith("unetdyn")]
    return found


FORBIDDEN = [
    ("core", "paper"), ("core", "backends"), ("core", "builtin_model"), ("core", "cli"),
    ("builtin_model", "paper"), ("builtin_model", "cli"), ("backends", "paper"), ("backends", "cli"),
    ("backends", "builtin_model"),
]


@pytest.mark.parametrize("src,dst", FORBIDDEN)
def test_no_import_against_the_flow(src, dst):
    bad = [(a, b) for a, b in imports() if part(a) == src and part(b) == dst]
    assert not bad, f"{src} must not import {dst}: {bad}"


def test_backends_do_not_import_the_sampler():
    bad = [(a, b) for a, b in imports() if part(a) == "backends" and b.startswith("unetdyn.sampler")]
    assert not bad


def test_the_public_imports_keep_working():
    from unetdyn import compare, load_unet, sample, trajectory  # noqa: F401

    assert callable(load_unet) and callable(sample)


def test_the_scan_sees_the_package():
    pairs = imports()
    assert ("unetdyn.paper.sweeps", "unetdyn.sampler") in pairs  # a known import is found
