"""The protocol core of chatwire does no I/O: its private modules never import socket,
selectors, ssl, threading or asyncio (the house rule; I/O lives in layers above)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FORBIDDEN = {"socket", "selectors", "ssl", "threading", "asyncio", "select", "subprocess"}
CORE = sorted((Path(__file__).resolve().parent.parent / "chatwire").glob("_*.py"))


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_module_imports_no_io(path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{path.name} imports {imported & FORBIDDEN}"


def test_core_is_not_empty() -> None:
    assert {p.name for p in CORE} >= {"_wire.py", "_codec.py", "_connection.py", "_state.py"}
