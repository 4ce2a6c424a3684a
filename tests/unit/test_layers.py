"""The package reads top-down: a module imports only from its own layer or the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Lowest first. A module's layer is the first prefix that matches its dotted name.
LAYERS: list[tuple[str, ...]] = [
    (
        "scheduler.errors",
        "scheduler.model",
        "scheduler.settings",
        "scheduler.cpus",
        "scheduler.failpoints",
        "scheduler.partitioner",
        "scheduler.logs",
        "scheduler.metrics",
        "scheduler.http",
        "scheduler._native",
    ),
    (
        "scheduler.config",
        "scheduler.headers",
        "scheduler.codec",
        "scheduler.records",
        "scheduler._cron",
        "scheduler.recurring",
    ),
    ("scheduler.kafka", "scheduler.topics"),
    ("scheduler.client", "scheduler.aio", "scheduler"),
    ("scheduler.service", "scheduler.ops", "consumers"),
    ("scheduler.cli", "scheduler.dev", "scheduler.ui"),
]


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = level, len(prefix)
    if best < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


def modules() -> list[tuple[str, Path]]:
    out = []
    for package in ("scheduler", "consumers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out.append((name, path))
    return out


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from scheduler import _cron` imports the submodule scheduler._cron, not the package face
            subs = [f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")]
            found.update(subs if len(subs) == len(node.names) else [node.module])
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("scheduler", "consumers")}


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_a_module_imports_nothing_from_a_layer_above_it(module: str, path: Path) -> None:
    if module == "scheduler":
        return  # the package face re-exports the client layer
    mine = layer_of(module)
    above = sorted(m for m in imports(path) if layer_of(m) > mine)
    assert not above, f"{module} (layer {mine}) imports {above} from above it"


def test_the_checker_sees_a_violation() -> None:
    assert layer_of("scheduler.service.loop") > layer_of("scheduler.settings")
    assert layer_of("scheduler.kafka.txn") < layer_of("scheduler.service.loop")
