"""Print requirements.txt: queueops' runtime dependencies, pinned to the versions installed.

    .venv/bin/python scripts/requirements.py > requirements.txt

The pins are the runtime dependency closure of pyproject.toml's `dependencies` (no extras,
no dev tools), at the versions of the environment this runs in (the test suite's .venv);
the last line installs queueops itself from the checkout, which is what a buildpack (the
Procfile runs `queueops serve`) and the Dockerfile need. tests/test_deploy_files.py checks
the file against pyproject.toml.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent

HEADER = """\
# queueops' runtime dependencies, pinned to the versions its test suite ran against, then
# queueops itself (`.`): what a Python buildpack installs before the Procfile's
# `queueops serve`, and what the Dockerfile installs. Extras are not here: add
# boto3 for WORKER_MODE_BACKEND=apprunner (pip install '.[aws]').
# Generated; after changing pyproject.toml's dependencies, regenerate with
#   .venv/bin/python scripts/requirements.py > requirements.txt
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def requires_of(name: str) -> list[Requirement]:
    """The installed distribution's own requirements that apply here, extras left out."""
    found = []
    for text in distribution(name).requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            found.append(req)
    return found


def closure(roots: list[Requirement]) -> dict[str, str]:
    """canonical name -> installed version, for `roots` and everything they need."""
    pins: dict[str, str] = {}
    todo = [r for r in roots if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        if name in pins:
            continue
        try:
            pins[name] = distribution(req.name).version
        except PackageNotFoundError:
            raise SystemExit(f"{req.name} is not installed: pip install -e . first") from None
        todo.extend(requires_of(req.name))
    return pins


def render() -> str:
    pins = closure(runtime_requirements())
    lines = [f"{name}=={pins[name]}" for name in sorted(pins)]
    return HEADER + "\n".join(lines) + "\n.\n"


if __name__ == "__main__":
    sys.stdout.write(render())
