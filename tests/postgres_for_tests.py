"""The PostgreSQL the test session uses, decided once when this module is first imported.

`PG_URL` is a `postgresql://user@127.0.0.1:port/dbname` URL of an *admin* database on the
session's server: tests never write there, they get a database of their own
(`create_database` / `drop_database`, or the `pg_url` fixture of pg_fixtures), so the suite
can share a server with other databases. In order:

1. `QUEUEOPS_TEST_PG_URL=postgresql://...` set: that server, no questions asked. Every
   process the session starts (and a nested pytest) inherits the variable.
2. A server answering at 127.0.0.1:5432 (the usual local one, or a CI service container) as
   `postgres` or as the current OS user, into database `postgres`, with the right to create
   databases. `QUEUEOPS_TEST_PG_PRIVATE=1` skips this probe, to exercise step 3 on a machine
   that has a server on 5432.
3. A private cluster in a temp dir on a free loopback port: `initdb` + `pg_ctl start` (from
   PATH, else Debian's /usr/lib/postgresql/*/bin), stopped (`-m immediate`, nothing in it is
   worth a clean shutdown) and deleted when the test process exits. initdb refuses to run as
   root, so as root both run as the `postgres` user. Its URL goes into
   `QUEUEOPS_TEST_PG_URL`, so child processes reuse it instead of starting their own.

With none of them the import ends the process with one line saying why: a suite that
silently skipped its database tests would look green while testing nothing.

Unlike the Redis one, a private cluster does not die with its parent (pg_ctl puts it in a
session of its own): a test process killed with SIGKILL leaves it running, with its temp dir.
"""

from __future__ import annotations

import atexit
import getpass
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV = "QUEUEOPS_TEST_PG_URL"
PRIVATE_ENV = "QUEUEOPS_TEST_PG_PRIVATE"
DB_PREFIX = "qo_test_"
SERVER_USER = "postgres"  # the OS user that runs initdb/pg_ctl when we are root
_DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"


class PgStartError(Exception):
    """A private cluster could not start; the message is one line saying why."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# Finding the binaries --------------------------------------------------------------------


def find_initdb() -> Path | None:
    """`initdb` on PATH, else the newest Debian one (Debian keeps it off PATH)."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path)
    candidates = [Path(p) for p in glob.glob(f"{_DEBIAN_BINDIRS}/initdb")]

    def version(p: Path) -> tuple[int, ...]:
        name = p.parent.parent.name
        return tuple(int(x) for x in name.split(".") if x.isdigit())

    candidates.sort(key=version, reverse=True)
    return candidates[0] if candidates else None


def _pg_ctl_next_to(initdb: Path) -> Path:
    """The pg_ctl of the same installation as `initdb` (mixing versions fails oddly)."""
    sibling = initdb.parent / "pg_ctl"
    if sibling.exists():
        return sibling
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path)
    raise PgStartError(f"found {initdb} but no pg_ctl next to it or on PATH")


def initdb_unavailable_reason() -> str:
    return f"no initdb on PATH or in {_DEBIAN_BINDIRS} (Debian: apt-get install postgresql)"


# Running as the server's user -------------------------------------------------------------


def _server_user() -> pwd.struct_passwd | None:
    """The OS user to run initdb/pg_ctl as: None for "ourselves" (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PgStartError(
            f"running as root, where initdb refuses to run, and there is no "
            f"`{SERVER_USER}` user to run it as"
        ) from None


def _as_user(cmd: list[str], user: pwd.struct_passwd | None) -> list[str]:
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user.pw_name, "--", *cmd]
    if shutil.which("su"):
        return ["su", user.pw_name, "-s", "/bin/sh", "-c", shlex.join(cmd)]
    raise PgStartError(f"running as root with neither runuser nor su to become {user.pw_name}")


def _run(cmd: list[str], user: pwd.struct_passwd | None, cwd: Path, timeout: float) -> str:
    """Run `cmd` (as `user`); return its output, or raise PgStartError with its last line."""
    try:
        done = subprocess.run(
            _as_user(cmd, user),
            cwd=cwd,  # the server user may not be able to enter our working directory
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PgStartError(f"{Path(cmd[0]).name}: {_one_line(str(err))}") from err
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise PgStartError(f"{Path(cmd[0]).name} failed: {_one_line(last)}")
    return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: in a container nobody may reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


# The private cluster ----------------------------------------------------------------------


@dataclass
class PrivateCluster:
    """A cluster this process started: `stop()` ends it and deletes `base`."""

    base: Path
    port: int
    pid: int
    url: str
    _pg_ctl: Path
    _user: pwd.struct_passwd | None
    _owner_pid: int = field(default_factory=os.getpid)
    stopped: bool = False

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    def stop(self) -> None:
        """Stop the server and remove its directory. Idempotent, and a no-op in a forked
        child (the atexit hook is inherited; only the starting process owns the cluster)."""
        if self.stopped or os.getpid() != self._owner_pid:
            return
        self.stopped = True
        cmd = [str(self._pg_ctl), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"]
        with suppress(PgStartError):  # already gone; the directory still goes
            _run(cmd, self._user, self.base, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


def start_private_cluster(base: Path | None = None) -> PrivateCluster:
    """initdb a cluster in `base` (an empty directory, made with mkdtemp when None) and
    start it on a free 127.0.0.1 port, its socket in `base` too (never /var/run/postgresql,
    which may be missing or belong to a system server). Raises PgStartError.

    As root, `base` is handed to the `postgres` user, who must be able to reach it: a
    tempfile.mkdtemp() directory is fine, pytest's tmp_path (under a 0700 dir) is not.
    """
    initdb = find_initdb()
    if initdb is None:
        raise PgStartError(initdb_unavailable_reason())
    pg_ctl = _pg_ctl_next_to(initdb)
    user = _server_user()
    base = Path(tempfile.mkdtemp(prefix="queueops-pg-")) if base is None else base
    try:
        if user is not None:
            os.chown(base, user.pw_uid, user.pw_gid)
        os.chmod(base, 0o700)
        data = base / "data"
        # --locale=C: with -E UTF8, a locale from the environment that is not UTF-8 (or not
        # installed) makes initdb fail; the tests need no collation of their own.
        encoding = ["-E", "UTF8", "--locale=C"]
        init = [str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", *encoding]
        _run([*init, "--no-sync"], user, base, timeout=120)
        last: PgStartError | None = None
        for _ in range(3):  # the free port may be taken between finding it and binding it
            port = _free_port()
            options = (
                f"-p {port} -k {shlex.quote(str(base))} -c listen_addresses=127.0.0.1 -c fsync=off"
            )
            cmd = [str(pg_ctl), "-D", str(data), "-o", options, "-l", str(base / "log")]
            try:
                _run([*cmd, "-w", "start"], user, base, timeout=120)
            except PgStartError as err:
                last = PgStartError(f"{err}; see {base / 'log'}")
                continue
            pid = int((data / "postmaster.pid").read_text().split()[0])
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            return PrivateCluster(base, port, pid, url, pg_ctl, user)
        assert last is not None
        raise last
    except BaseException:
        if not (base / "log").exists():
            shutil.rmtree(base, ignore_errors=True)  # keep the log of a failed start
        raise


# Deciding the session's server ------------------------------------------------------------


def _probe_local() -> str:
    """The URL of a usable server at 127.0.0.1:5432, or raise LookupError saying why not."""
    users = list(dict.fromkeys([SERVER_USER, getpass.getuser()]))
    why: list[str] = []
    for user in users:
        url = f"postgresql://{user}@127.0.0.1:5432/postgres"
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
                ).fetchone()
        except psycopg.Error as err:
            lines = str(err).strip().splitlines()
            why.append(f"as {user}: {_one_line(lines[0]) if lines else type(err).__name__}")
            continue
        if row and row[0]:
            return url
        why.append(f"as {user}: may not create databases")
    raise LookupError("; ".join(why))


PRIVATE: PrivateCluster | None = None  # the cluster this process started, if it did


def _session_url() -> str:
    global PRIVATE
    given = os.environ.get(ENV)
    if given:
        return given
    if os.environ.get(PRIVATE_ENV, "") in ("", "0"):
        try:
            url = _probe_local()
        except LookupError as err:
            local = f"nothing usable at 127.0.0.1:5432 ({err})"
        else:
            os.environ[ENV] = url  # children skip the probe
            return url
    else:
        local = f"{PRIVATE_ENV} is set"
    try:
        PRIVATE = start_private_cluster()
    except PgStartError as err:
        sys.exit(
            f"the tests need PostgreSQL: {local}, and a private one did not start: {err} "
            f"(or {ENV}=postgresql://...)"
        )
    atexit.register(PRIVATE.stop)
    os.environ[ENV] = PRIVATE.url  # child processes (and a nested pytest) use the same server
    return PRIVATE.url


PG_URL = _session_url()


# Databases for tests ----------------------------------------------------------------------


def new_database_name() -> str:
    return f"{DB_PREFIX}{uuid.uuid4().hex[:10]}"


def database_url(name: str, admin_url: str | None = None) -> str:
    """`admin_url` (default PG_URL) with its database replaced by `name`."""
    parts = urlsplit(admin_url or PG_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _check_name(name: str) -> None:
    # The server may be a shared one (5432, QUEUEOPS_TEST_PG_URL): only ever create and
    # drop databases that are recognisably the tests' own.
    if not name.startswith(DB_PREFIX):
        raise ValueError(f"test databases are named {DB_PREFIX}...: {name!r}")


def create_database(name: str | None = None) -> str:
    """Create database `name` (default: a fresh `qo_test_<hex10>`); return its URL."""
    name = name or new_database_name()
    _check_name(name)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(name)


def drop_database(name: str) -> None:
    """Drop database `name` even while a test's connections are still open on it: end its
    backends first, then DROP ... WITH (FORCE) (PG 13+) for any that connected since."""
    _check_name(name)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))
