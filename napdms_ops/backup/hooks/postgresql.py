"""PostgreSQL: roles with `pg_dumpall --globals-only`, each database with `pg_dump -Fc`.

Each database is dumped inside an exported snapshot (`pg_dump --snapshot`) while the same
transaction counts and checksums every table, so the recorded sums describe exactly the data in
the dump. The drill loads the dumps into a scratch cluster and compares the sums.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from components.model.plan import PostgresqlSource
from napdms_ops.backup import hooks
from napdms_ops.backup.hooks import HookContext, HookError, read_password
from napdms_ops.backup.manifest import ServiceRecord, TableSum
from napdms_ops.backup.restic import CommandFailed

_TABLES = (
    "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
)
# Order-independent: the sum of each row's 64-bit hash, so a restore that puts rows in another
# physical order still matches, while any changed, lost or added row does not. hashtextextended
# is the hash PostgreSQL itself persists for hash partitioning (stable across releases) and is
# about twice as fast as md5 here; the method is recorded so a later change cannot make old
# runs look corrupt.
CHECKSUM_METHOD = "sum-hashtextextended-0"
_SUM = (
    "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0) "
    "FROM ONLY {table} AS t"
)
_USER_TABLES = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%'"
)


def _environment(source: PostgresqlSource, host: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PGHOST=host or source.host,
        PGPORT=str(source.port),
        PGUSER=source.user,
        PGCONNECT_TIMEOUT="10",
    )
    env.pop("PGPASSWORD", None)
    password = read_password(source.service, source.password_file)
    if password is not None:
        env["PGPASSWORD"] = password
    return env


def _query(env: dict[str, str], database: str, sql: str) -> list[str]:
    done = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
        capture_output=True,
        env=env,
    )
    if done.returncode != 0:
        raise HookError(
            f"psql on {env['PGHOST']}:{env['PGPORT']}/{database}: {_last_line(done.stderr)}"
        )
    return [line for line in done.stdout.decode().splitlines() if line]


def _last_line(stderr: bytes) -> str:
    """The line that says what went wrong (pg_restore follows it with the failed command)."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    errors = [line for line in lines if "error:" in line.lower() or "fatal:" in line.lower()]
    return (errors or lines or ["no output"])[-1]


class _SnapshotSession:
    """A psql session holding a repeatable-read transaction whose snapshot pg_dump shares."""

    def __init__(self, env: dict[str, str], database: str):
        self._process = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.database = database
        self.snapshot = self._ask(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT pg_export_snapshot();"
        )

    def _ask(self, sql: str) -> str:
        self._process.stdin.write(sql + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise HookError(
                f"psql session on {self.database}: {self._process.stderr.read().strip() or 'ended'}"
            )
        return line.strip()

    def table_sums(self) -> dict[str, TableSum]:
        """Rows and checksum of every user table, as of the exported snapshot."""
        tables = []
        self._process.stdin.write(f"SELECT count(*) FROM ({_TABLES}) AS listed;\n")
        self._process.stdin.flush()
        count = int(self._process.stdout.readline().strip() or 0)
        if count:
            self._process.stdin.write(_TABLES + ";\n")
            self._process.stdin.flush()
            tables = [self._process.stdout.readline().strip() for _ in range(count)]
        sums = {}
        for table in tables:
            rows, checksum = self._ask(_SUM.format(table=table) + ";").split("|")
            sums[table] = TableSum(rows=int(rows), checksum=checksum)
        return sums

    def close(self) -> None:
        """End the transaction and the session."""
        if self._process.poll() is None:
            try:
                self._process.communicate("COMMIT;\n\\q\n", timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()


def backup(source: PostgresqlSource, context: HookContext) -> ServiceRecord:
    """Roles, then every database in its own snapshot, each as one restic snapshot."""
    started = time.monotonic()
    env = _environment(source)
    databases = source.databases or [
        database
        for database in _query(
            env,
            "postgres",
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
        )
        # The maintenance database exists in every cluster; only worth a dump when something
        # lives in it.
        if database != "postgres" or _query(env, "postgres", _USER_TABLES) != ["0"]
    ]
    parts, tables = [], {}
    try:
        summary = context.restic.backup_command(
            ["pg_dumpall", "--globals-only"],
            env,
            f"/{source.service}/globals.sql",
            context.host_tag,
            context.tags_for(source.service, "part=globals"),
        )
        parts.append(hooks.part(summary, f"/{source.service}/globals.sql"))
        for database in databases:
            session = _SnapshotSession(env, database)
            try:
                sums: dict[str, TableSum] = {}
                failure: list[BaseException] = []
                counter = threading.Thread(target=_collect, args=(session, sums, failure))
                counter.start()
                path = f"/{source.service}/{database}.dump"
                try:
                    summary = context.restic.backup_command(
                        ["pg_dump", "--snapshot", session.snapshot, "-Fc", "-Z0", "-d", database],
                        env,
                        path,
                        context.host_tag,
                        context.tags_for(source.service, f"part=db:{database}"),
                    )
                finally:
                    counter.join()
                if failure:
                    raise failure[0]
            finally:
                session.close()
            parts.append(hooks.part(summary, path))
            tables[database] = sums
    except CommandFailed as error:
        raise HookError(f"{source.service}: {error}") from None
    return hooks.record(source, parts, started, tables=tables, checksum_method=CHECKSUM_METHOD)


def _collect(session: _SnapshotSession, sums: dict, failure: list) -> None:
    try:
        sums.update(session.table_sums())
    except BaseException as error:  # handed to the calling thread, which re-raises it
        failure.append(error)


def load(
    source: PostgresqlSource,
    record: ServiceRecord,
    into: str,
    env: Mapping[str, str] | None = None,
) -> None:
    """Load the restored dumps (`restore` puts them under `into/<service>/`) into the server `env`
    points at (libpq variables; None: the source's own server): roles first, then each database,
    each recreated as it was (`--create`: owner, encoding, locale)."""
    _load(
        source, record, into, dict(env) if env is not None else _environment(source), scratch=False
    )


def _load(
    source: PostgresqlSource, record: ServiceRecord, into: str, env: dict[str, str], scratch: bool
) -> None:
    # A scratch cluster may lack the original locale, so there each database is created plain;
    # the drill compares data, which the locale does not change.
    jobs = os.cpu_count() or 2
    dumps = Path(into) / source.service
    # Roles that already exist (the bootstrap superuser at least) make some lines fail: expected.
    subprocess.run(
        ["psql", "-X", "-q", "-d", "postgres", "-f", str(dumps / "globals.sql")],
        env=env,
        capture_output=True,
    )
    for database in record.tables:
        argv = ["pg_restore", "--exit-on-error", "-j", str(jobs)]
        if database == "postgres":
            argv += ["-d", "postgres"]  # exists in every cluster
        elif scratch:
            _query(env, "postgres", f'CREATE DATABASE "{database}" TEMPLATE template0')
            argv += ["-d", database]
        else:
            argv += ["--create", "-d", "postgres"]
        done = subprocess.run(
            [*argv, str(dumps / f"{database}.dump")], env=env, capture_output=True
        )
        if done.returncode != 0:
            raise HookError(
                f"{source.service}: pg_restore of {database}: {_last_line(done.stderr)}"
            )


def verify(
    source: PostgresqlSource, record: ServiceRecord, context: HookContext, into: str
) -> list[str]:
    """Start a scratch cluster, load the dumps, compare every table's rows and checksum."""
    if record.checksum_method != CHECKSUM_METHOD:
        return [
            f"{source.service}: sums were recorded as {record.checksum_method}, "
            f"this drill computes {CHECKSUM_METHOD}; drill a newer run"
        ]
    with scratch_cluster(Path(context.workdir) / f"drill-{source.service}") as env:
        _load(source, record, into, env, scratch=True)
        problems = []
        for database, recorded in record.tables.items():
            restored = {}
            for table in _query(env, database, _TABLES):
                rows, checksum = _query(env, database, _SUM.format(table=table))[0].split("|")
                restored[table] = TableSum(rows=int(rows), checksum=checksum)
            for table in sorted(set(recorded) | set(restored)):
                if recorded.get(table) != restored.get(table):
                    problems.append(
                        f"{source.service}/{database}: table {table} "
                        f"recorded {_show(recorded.get(table))}, "
                        f"restored {_show(restored.get(table))}"
                    )
        return problems


def _show(table: TableSum | None) -> str:
    return "nothing" if table is None else f"{table.rows} rows, sum {table.checksum}"


def server_binaries() -> Path:
    """The newest PostgreSQL server's bin directory (initdb, pg_ctl)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if not candidates:
        raise HookError(
            "no PostgreSQL server binaries (initdb) in this image; the drill needs them"
        )
    return Path(candidates[-1]).parent


@contextmanager
def scratch_cluster(directory: Path, owner: str = "postgres") -> Iterator[dict[str, str]]:
    """A throw-away PostgreSQL cluster on a unix socket; yields the environment to reach it."""
    bin_dir = server_binaries()
    shutil.rmtree(directory, ignore_errors=True)
    data, sockets = directory / "data", directory / "run"
    data.mkdir(parents=True)
    sockets.mkdir()
    as_owner: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        shutil.chown(directory, owner, owner)
        shutil.chown(data, owner, owner)
        shutil.chown(sockets, owner, owner)
        as_owner = ["runuser", "-u", owner, "--"]
    user = owner if os.geteuid() == 0 else os.environ.get("USER", "postgres")

    def run(*argv: str) -> None:
        done = subprocess.run([*as_owner, *argv], capture_output=True, cwd="/")
        if done.returncode != 0:
            raise HookError(f"scratch cluster: {Path(argv[0]).name}: {_last_line(done.stderr)}")

    run(
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        user,
        "--auth=trust",
        "--no-sync",
        "-E",
        "UTF8",
        "--locale=C",
    )
    options = (
        f"-c listen_addresses='' -k {sockets} -c max_wal_size=4GB -c maintenance_work_mem=256MB"
    )
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-t",
        "120",
        "-l",
        str(directory / "log"),
        "-o",
        options,
        "start",
    )
    env = dict(os.environ, PGHOST=str(sockets), PGPORT="5432", PGUSER=user)
    env.pop("PGPASSWORD", None)
    try:
        yield env
    finally:
        subprocess.run(
            [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            cwd="/",
        )
        shutil.rmtree(directory, ignore_errors=True)
