"""DESIGN.md's rooms: imports only go down (entry points > transports > commands >
scheduler > edges), so no folder-level loop can form."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ("bot.slack", "bot.alerts", "bot.incidents", "bot.render_text")
ENTRIES = ("bot.cli", "bot.shell", "bot.http_app")
FORBIDDEN = {
    "commands": (*ENTRIES, *TRANSPORTS, "bot.dispatch"),
    "scheduler": (*ENTRIES, *TRANSPORTS, "bot.dispatch", "commands"),
    "bot/queues": (*ENTRIES, *TRANSPORTS, "bot.dispatch", "commands", "scheduler"),
}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_only_go_down(folder: str) -> None:
    for source in (ROOT / folder).rglob("*.py"):
        for name in imports(source):
            bad = [f for f in FORBIDDEN[folder] if name == f or name.startswith(f + ".")]
            assert not bad, f"{source.relative_to(ROOT)} imports {name} (a room above it)"
