"""`WORKER_MODE_BACKEND=dotenv`: the app reads a .env file (WORKER_MODE_DOTENV).

A switch changes the lines of the variables it changes and keeps every other byte
(comments, order, quoting, blank lines); the file is replaced atomically (a temporary file
beside it, fsync, rename), so the app never reads half a file.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path

from bot.deploy.base import EnvironmentChanged
from bot.errors import OperationFailed

_LINE = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)(\s*=\s*)(.*?)(\r?\n)?$")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines(keepends=True):
        m = _LINE.match(line)
        if m and not line.lstrip().startswith("#"):
            env[m.group(2)] = _unquote(m.group(4))
    return env


def edit(text: str, changes: dict[str, str | None]) -> str:
    """`text` with only the lines of `changes` touched (None removes the line; a new name
    is appended)."""
    out: list[str] = []
    done: set[str] = set()
    for line in text.splitlines(keepends=True):
        m = _LINE.match(line)
        if m and not line.lstrip().startswith("#") and m.group(2) in changes:
            name = m.group(2)
            done.add(name)
            value = changes[name]
            if value is not None:
                out.append(f"{m.group(1)}{name}{m.group(3)}{value}{m.group(5) or ''}")
            continue
        out.append(line)
    for name, value in changes.items():
        if name not in done and value is not None:
            if out and not out[-1].endswith("\n"):
                out[-1] += "\n"
            out.append(f"{name}={value}\n")
    return "".join(out)


class DotenvBackend:
    name = "dotenv"

    def __init__(self, path: Path) -> None:
        self.path = path

    async def read(self) -> dict[str, str]:
        try:
            return parse(await asyncio.to_thread(self.path.read_text))
        except OSError as err:
            raise self._file_error("read", err) from None

    async def write(self, expected: dict[str, str], changes: dict[str, str | None]) -> None:
        try:
            await asyncio.to_thread(self._write, expected, changes)
        except OSError as err:
            raise self._file_error("write", err) from None

    def _file_error(self, doing: str, err: OSError) -> OperationFailed:
        """A missing or unreadable file is the variable's problem: name it, not Redis."""
        return OperationFailed(
            f"WORKER_MODE_DOTENV: cannot {doing} {self.path}: {err.strerror or err}"
        )

    def _write(self, expected: dict[str, str], changes: dict[str, str | None]) -> None:
        text = self.path.read_text()
        if parse(text) != expected:
            raise EnvironmentChanged(f"{self.path} changed since the preview; nothing written")
        mode = self.path.stat().st_mode & 0o777
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", newline="") as f:
                f.write(edit(text, changes))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
