"""PostgreSQL: roles with `pg_dumpall --globals-only`, each database with `pg_dump -Fc`.

Each database is dumped inside an exported snapshot (`pg_dump --snapshot`) while the same
transaction counts and checksums every table, so the recorded sums describe exactly the data in
the dump. The drill loads the dumps into a scratch cluster and compares the sums.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from components.model.plan import PostgresqlSource
from napdms_ops.backup import hooks, pitr, wal
from napdms_ops.backup.hooks import HookContext, HookError, read_password
from napdms_ops.backup.manifest import BaseBackup, Part, ServiceRecord, TableSum
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


def environment(source: PostgresqlSource, host: str | None = None) -> dict[str, str]:
    """libpq variables to reach the source (or `host`) as its login."""
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


_EXPORT = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT pg_export_snapshot();"


class _SnapshotSession:
    """A psql session holding a repeatable-read transaction whose snapshot pg_dump shares."""

    def __init__(self, env: dict[str, str], database: str, begin: str = _EXPORT):
        self._process = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.database = database
        self.snapshot = self._ask(begin)

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


_CHANGES = (
    "SELECT coalesce(sum(tup_inserted + tup_updated + tup_deleted), 0) || '@' || "
    "coalesce(string_agg(datname || ':' || coalesce(stats_reset::text, ''), ',' "
    "ORDER BY datname), '') FROM pg_stat_database WHERE datname IS NOT NULL"
)
"""Rows written across the cluster since the statistics' reset, and which databases there are:
an unchanged answer means no row was written (a restart that resets the counters is a change)."""


def backup(source: PostgresqlSource, context: HookContext) -> ServiceRecord:
    """With the WAL archived, a base backup; the logical dump (roles, then every database in its
    own snapshot) when it is due. A server with no row written since the previous run keeps that
    run's snapshots."""
    started = time.monotonic()
    env = environment(source)
    previous = context.previous.get(source.service)
    changes = _query(env, "postgres", _CHANGES)[0]
    if (
        previous is not None
        and previous.changes == changes
        and (source.wal is None or previous.base is not None)
    ):
        return hooks.record(
            source,
            list(previous.parts),
            started,
            tables=previous.tables,
            checksum_method=previous.checksum_method,
            base=previous.base,
            dumped=previous.dumped,
            changes=changes,
        )
    parts: list[Part] = []
    base = None
    try:
        if source.wal is not None:
            base_part, base = _base_backup(source, env, context)
            parts.append(base_part)
        if _dump_due(source, previous):
            dump_parts, tables = _dump(source, env, context)
            dumped, method = time.time(), CHECKSUM_METHOD
        else:
            dump_parts = previous.logical_parts
            tables, dumped, method = previous.tables, previous.dumped, previous.checksum_method
    except CommandFailed as error:
        raise HookError(f"{source.service}: {error}") from None
    return hooks.record(
        source,
        dump_parts + parts,
        started,
        tables=tables,
        checksum_method=method,
        base=base,
        dumped=dumped,
        changes=changes,
    )


def _dump_due(source: PostgresqlSource, previous: ServiceRecord | None) -> bool:
    if source.wal is None or previous is None or previous.dumped is None:
        return True
    return time.time() - previous.dumped >= source.wal.logical_dump_days * 86400 - 3600


def _databases(source: PostgresqlSource, env: dict[str, str]) -> list[str]:
    return source.databases or [
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


def _dump(
    source: PostgresqlSource, env: dict[str, str], context: HookContext
) -> tuple[list[Part], dict[str, dict[str, TableSum]]]:
    """Roles, then every database in its own snapshot, each as one restic snapshot."""
    parts, tables = [], {}
    summary = context.restic.backup_command(
        ["pg_dumpall", "--globals-only"],
        env,
        f"/{source.service}/globals.sql",
        context.host_tag,
        context.tags_for(source.service, "part=globals"),
    )
    parts.append(hooks.part(summary, f"/{source.service}/globals.sql"))
    for database in _databases(source, env):
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
    return parts, tables


def _base_backup(
    source: PostgresqlSource, env: dict[str, str], context: HookContext
) -> tuple[Part, BaseBackup]:
    """`pg_basebackup` as one tar into the repository, then the spool's epoch closed: shipped
    with the WAL up to the backup's end, and trimmed to what this base needs."""
    # The agent's slot, made now if its receiver has not connected yet, holds the server's WAL
    # from here on until the receiver has it: the base is never left without its WAL.
    slot = source.wal.slot
    _query(
        env,
        "postgres",
        f"SELECT pg_create_physical_replication_slot('{slot}', true) WHERE NOT EXISTS "
        f"(SELECT FROM pg_replication_slots WHERE slot_name = '{slot}')",
    )
    # The redo point of the backup's checkpoint is at or after this segment: recovery from this
    # base needs nothing older.
    start_wal = _query(env, "postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())")[0]
    path = f"/{source.service}/{pitr.BASE_FILE}"
    summary = context.restic.backup_command(
        [
            "pg_basebackup",
            "-D",
            "-",
            "-F",
            "tar",
            # The WAL comes from the archive; `fast` checkpoints now rather than spread out.
            "-X",
            "none",
            "-c",
            "fast",
            "--no-manifest",
            "-l",
            f"napdms {context.tags[-1] if context.tags else ''}",
        ],
        env,
        path,
        context.host_tag,
        context.tags_for(source.service, "part=base"),
    )
    finished = time.time()
    wal.close_epoch(source, context, start_wal)
    wal.update_state(
        context.state_dir,
        source.service,
        lambda state: {"last_base": finished, "last_base_bytes": summary.bytes_processed},
    )
    return hooks.part(summary, path), BaseBackup(
        part=summary.snapshot_id, start_wal=start_wal, finished=finished
    )


def restore_point(
    source: PostgresqlSource, name: str
) -> tuple[str, dict[str, dict[str, TableSum]]]:
    """Set restore point `name` and return its position with every table's sums at exactly that
    point.

    In each database a transaction locks the user tables against writers (SHARE: writers that
    hold a table finish first, new ones wait) and exports its snapshot; with every database held,
    the restore point goes into the WAL; the locks go as soon as other sessions have imported the
    snapshots, which are then summed at leisure. So no commit to a user table lies between a
    snapshot and the restore point, and recovery to the point sees exactly the summed rows.
    Writers wait for the lock (2 s at most), never for the sums.
    """
    env = environment(source)
    holders: dict[str, _SnapshotSession] = {}
    readers: dict[str, _SnapshotSession] = {}
    try:
        for database in _databases(source, env):
            tables = _query(env, database, _TABLES)
            lock = f"LOCK TABLE {', '.join(tables)} IN SHARE MODE; " if tables else ""
            holders[database] = _SnapshotSession(
                env,
                database,
                # Writers queue behind a waiting LOCK: give up soon (the agent tries again
                # later) rather than stall them behind a long transaction.
                "BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL lock_timeout = '2s'; "
                f"{lock}SELECT pg_export_snapshot();",
            )
        escaped = name.replace("'", "''")
        lsn = _query(env, "postgres", f"SELECT pg_create_restore_point('{escaped}')")[0]
        for database, holder in holders.items():
            readers[database] = _SnapshotSession(
                env,
                database,
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; "
                f"SET TRANSACTION SNAPSHOT '{holder.snapshot}'; SELECT 1;",
            )
            holder.close()
        return lsn, {database: reader.table_sums() for database, reader in readers.items()}
    finally:
        for session in [*holders.values(), *readers.values()]:
            session.close()


def server_sums(env: Mapping[str, str], databases: list[str]) -> dict[str, dict[str, TableSum]]:
    """Rows and checksum of every user table of `databases` on the server `env` reaches."""
    sums: dict[str, dict[str, TableSum]] = {}
    for database in databases:
        sums[database] = {}
        for table in _query(dict(env), database, _TABLES):
            rows, checksum = _query(dict(env), database, _SUM.format(table=table))[0].split("|")
            sums[database][table] = TableSum(rows=int(rows), checksum=checksum)
    return sums


def compare_sums(
    service: str,
    recorded: Mapping[str, Mapping[str, TableSum]],
    restored: Mapping[str, Mapping[str, TableSum]],
) -> list[str]:
    """Every table whose rows or checksum differ between what was recorded and restored."""
    problems = []
    for database in recorded:
        before, after = recorded[database], restored.get(database, {})
        for table in sorted(set(before) | set(after)):
            if before.get(table) != after.get(table):
                problems.append(
                    f"{service}/{database}: table {table} "
                    f"recorded {_show(before.get(table))}, restored {_show(after.get(table))}"
                )
    return problems


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
        source, record, into, dict(env) if env is not None else environment(source), scratch=False
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
        restored = server_sums(env, list(record.tables))
        return compare_sums(source.service, record.tables, restored)


def _show(table: TableSum | None) -> str:
    return "nothing" if table is None else f"{table.rows} rows, sum {table.checksum}"


@contextmanager
def scratch_cluster(directory: Path, owner: str = "postgres") -> Iterator[dict[str, str]]:
    """A throw-away PostgreSQL cluster on a unix socket; yields the environment to reach it."""
    bin_dir = pitr.server_binaries()
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
