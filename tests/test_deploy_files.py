"""The deploy artefacts: Dockerfile (+ .dockerignore), requirements.txt, .python-version,
Procfile. Docker is not needed: the Dockerfile is parsed and what it runs is checked against
the code (the console script, the CLI, the port, a real `queueops serve` answering its
HEALTHCHECK); requirements.txt is checked against pyproject.toml."""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from bot.cli import main as cli_main
from bot.config import Settings
from bot.embedded_redis import free_port

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction is skipped too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        word, _, rest = whole.partition(" ")
        out.append((word, rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def only(instructions: list[tuple[str, str]], name: str) -> list[str]:
    return [args for word, args in instructions if word.upper() == name]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def test_dockerfile_instructions_are_valid_and_in_order() -> None:
    steps = dockerfile()
    assert steps, "the Dockerfile is empty"
    for word, _ in steps:
        assert word in INSTRUCTIONS, f"{word} is not a Dockerfile instruction (or not upper case)"
    before_from = [w for w, _ in steps[: [w for w, _ in steps].index("FROM")]]
    assert set(before_from) <= {"ARG"}, "only ARG may come before the first FROM"
    assert len(only(steps, "CMD")) == 1 and only(steps, "ENTRYPOINT") == []
    assert len(only(steps, "HEALTHCHECK")) == 1


def test_the_image_is_python_slim_at_the_projects_python() -> None:
    (base,) = only(dockerfile(), "FROM")
    match = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim(?:-\w+)?", base)
    assert match, f"FROM {base}: expected python:X.Y-slim"
    assert match.group(1) == (ROOT / ".python-version").read_text().strip()


def test_it_runs_queueops_serve_as_a_non_root_user() -> None:
    steps = dockerfile()
    words = [w for w, _ in steps]
    cmd_at = words.index("CMD")
    users = [args for word, args in steps[:cmd_at] if word == "USER"]
    assert users, "no USER before CMD: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]} is root"
    assert exec_form(steps[cmd_at][1]) == ["queueops", "serve"]
    # The user exists: the image creates it.
    assert any(re.search(rf"\buseradd\b.*\b{re.escape(user)}\b", r) for r in only(steps, "RUN"))


def test_the_entrypoint_exists_in_the_package_and_the_cli() -> None:
    assert PYPROJECT["project"]["scripts"]["queueops"] == "bot.cli:main"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["serve", "--help"])  # the parser accepts `serve`; starts nothing
    assert code == 0 and out.getvalue().startswith("usage: queueops serve")
    assert (ROOT / "Procfile").read_text().split("\n")[0] == "web: queueops serve"


def test_it_exposes_the_port_serve_listens_on() -> None:
    default_port = Settings.model_fields["port"].default
    assert only(dockerfile(), "EXPOSE") == [str(default_port)]
    env = " ".join(only(dockerfile(), "ENV"))
    assert re.search(rf"\bPORT={default_port}\b", env)


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(Path(prefix).name, bare):
                return True
    return False


def test_what_it_copies_exists_and_is_not_ignored() -> None:
    patterns = dockerignore()
    copied: list[str] = []
    for args in only(dockerfile(), "COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        assert len(words) >= 2, f"COPY {args}"
        copied.extend(words[:-1])
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not ignored(source, patterns), f"COPY {source} is excluded by .dockerignore"
    # Everything the package is built from is in the image.
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied
    assert "requirements.txt" in copied and "pyproject.toml" in copied
    assert PYPROJECT["project"]["readme"] in copied  # setuptools reads it to build
    # And what never belongs in an image stays out.
    for secret_or_bulk in (".env", ".venv", ".git", "tests"):
        assert ignored(secret_or_bulk, patterns), f"{secret_or_bulk} is not in .dockerignore"


def test_the_image_installs_the_pinned_requirements() -> None:
    runs = " ".join(only(dockerfile(), "RUN"))
    assert "requirements.txt" in runs and "pip install" in runs


def healthcheck_command() -> str:
    (args,) = only(dockerfile(), "HEALTHCHECK")
    options, sep, command = args.partition("CMD ")
    assert sep, "HEALTHCHECK without CMD"
    for option in options.split():
        assert re.fullmatch(r"--(interval|timeout|start-period|start-interval|retries)=\S+", option)
    return command.strip()


def test_the_healthcheck_asks_healthz_with_python() -> None:
    command = healthcheck_command()
    assert command.startswith("python ") and "urllib" in command and "/healthz" in command
    assert "curl" not in command and "wget" not in command  # not in python:slim


@contextlib.contextmanager
def serving(redis_url: str, prefix: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`queueops serve` as the image runs it, Slack off, on this test's keys."""
    env = dict(os.environ)
    for info in Settings.model_fields.values():
        alias = info.validation_alias
        names = [alias] if isinstance(alias, str) else getattr(alias, "choices", [])
        for name in names:
            env.pop(str(name), None)
    env.update(
        REDIS_URL=redis_url,
        PORT=str(port),
        QUEUEOPS_PREFIX=prefix,
        QUEUEOPS_STATE_PREFIX=prefix,
        QUEUEOPS_QUEUES="deploy-check",
    )
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "queueops"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "queueops serve never answered /healthz"
                time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_healthcheck_passes_against_queueops_serve(redis_url: str, prefix: str) -> None:
    command = healthcheck_command()
    python_first = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    port = free_port()
    with serving(redis_url, prefix, port):
        ok = subprocess.run(
            ["sh", "-c", command], env={**python_first, "PORT": str(port)}, timeout=30
        )
        assert ok.returncode == 0
    nobody = free_port()
    down = subprocess.run(
        ["sh", "-c", command],
        env={**python_first, "PORT": str(nobody)},
        capture_output=True,
        timeout=30,
    )
    assert down.returncode != 0, "the healthcheck passed with nothing listening"


# requirements.txt ------------------------------------------------------------------------


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "pin_requirements", ROOT / "scripts/requirements.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned() -> tuple[dict[str, Version], list[str]]:
    """(name -> pinned version, the other requirement lines)."""
    pins: dict[str, Version] = {}
    others: list[str] = []
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match is None:
            others.append(line)
            continue
        name = canonical(match.group(1))
        assert name not in pins, f"{name} is pinned twice"
        pins[name] = Version(match.group(2))
    return pins, others


def test_requirements_pin_every_runtime_dependency_within_pyproject() -> None:
    pins, _ = pinned()
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        name = canonical(req.name)
        assert name in pins, f"{req.name} (pyproject dependencies) is not in requirements.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.txt pins {name}=={pins[name]}, outside pyproject's {req.specifier}"
        )


def test_requirements_install_queueops_itself_and_nothing_else_unpinned() -> None:
    _, others = pinned()
    assert others == ["."], f"besides pins, only '.' (queueops itself): {others}"


def test_requirements_are_the_runtime_closure_without_dev_tools() -> None:
    pins, _ = pinned()
    runtime = set(generator().closure(generator().runtime_requirements()))
    assert set(pins) == runtime, (
        f"missing: {sorted(runtime - set(pins))}, not needed at run time: "
        f"{sorted(set(pins) - runtime)}; regenerate (see the top of requirements.txt)"
    )
    for extra, texts in PYPROJECT["project"]["optional-dependencies"].items():
        for text in texts:
            name = canonical(Requirement(text).name)
            assert name not in pins or name in runtime, f"{name} ([{extra}] only) is pinned"


def test_requirements_say_how_to_regenerate() -> None:
    text = (ROOT / "requirements.txt").read_text()
    assert "scripts/requirements.py > requirements.txt" in text.split("\n\n")[0]
    assert (ROOT / "scripts/requirements.py").is_file()


# .python-version -------------------------------------------------------------------------


def test_python_version_agrees_with_pyproject() -> None:
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", version), version
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert requires.contains(version), f".python-version {version} is outside {requires}"
    short = "".join(version.split(".")[:2])
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py{short}"
    assert PYPROJECT["tool"]["mypy"]["python_version"] == ".".join(version.split(".")[:2])
