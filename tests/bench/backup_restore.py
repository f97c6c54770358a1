"""Backup and restore throughput of the backup orchestrator (napdms_ops.backup), next to two
baselines that save the same data to the same disk in the same run:

- `tar | zstd`: `tar -cf - docs | zstd -T0 -3` plus `pg_dump -Fc -Z0 | zstd -T0 -3`, restored
  with `zstd -dc | tar -x` and the dump decompressed;
- bare restic (the same binary, a fresh repository, the same password file): `restic backup
  <docs>` plus `pg_dump -Fc -Z0 | restic backup --stdin`, no table checksums, no manifest, no
  check, no prune; restored with `restic restore` of both snapshots.

The dataset is generated from a fixed seed under a temporary directory on the local disk:
documents of mixed sizes (many 4-64 KiB, some ~1 MiB, a few 20-100 MiB; about half the files
incompressible random bytes like PDFs and office files, the rest text that zstd shrinks to
about a third) for ~82 % of the size, and a PostgreSQL database (text, bytea and numeric
columns, indexes) for ~18 %, served by the local postgres stand-in image on the Docker engine
the live tests use, with the program's WAL settings and pg_hba (replication for `postgres`).
The orchestrator is used as a library (`run_backup`, `restore`, `restore_to`) with a local-path
repository, and with point-in-time recovery as the program declares it: the PostgreSQL source
has `wal=WalArchive(spool_dir=..., ship_interval_s=60)` and its `wal.Archiver` (pg_receivewal
into the spool, the spool shipped every 60 s) runs during our runs. So our full run is base
backup + logical dump + documents, and the incremental one base backup + documents (the logical
dump is not due: weekly with PITR). The baselines still dump with pg_dump.

Figures: full backup (first run into an empty repository), incremental after changing ~1 % of
the document bytes and ~1 % of the rows, full restore into an empty directory (files and dump
files on disk; loading the dump into PostgreSQL is the drill's job, `--drill` adds it), and a
breakdown: every restic process the orchestrator starts (observed, not changed), the
PostgreSQL part alone (pg_dump alone, the table-checksum queries alone, the postgres hook with
and without its checksum pass). The page cache is
dropped before every measured phase and every measured phase ends with `sync`, so reads come
from disk and writes reach it in every run alike. MB = 1e6 bytes.

PITR figures: `rpo_s` is, for each of 20 commits spaced by random seconds (~3 minutes in all),
the wall time from its COMMIT returning to the end of the first shipment of the spool that holds
it (one that started after pg_receivewal had flushed the commit into the spool); p95 (nearest
rank) and max are reported. `pitr_restore_s` is `restore_to` of the database into an empty
directory, to a moment after the incremental and 2 s after the last of those commits (one more
commit follows 2 s later); the recovered cluster is then started to check that every mark up to
the last one is there, the one after the moment is not, and the attachments count is the
source's. Recovery runs the server on this host, so the en_US.UTF-8 locale of the image's
cluster must exist here (generated with localedef when missing and run as root).

Goals (issue): incremental_over_full (incremental hook phase / full hook phase) < 0.10,
overhead_vs_restic (our full hook phase / bare restic's full backup) < 1.10, rpo_s p95 < 300.

Run: python3 tests/bench/backup_restore.py [--size-gb 2.0] [--runs 3] [--drill] [--keep]

  --size-gb  size of the generated dataset in GB (1e9 bytes); 2.0 takes ~15 minutes on 2 cores
             (of which ~5 minutes of RPO commits and waiting for shipments), --drill adds about
             one; 0.2 is a five-minute smoke run
  --runs     rounds of full backups (and of restores) of each kind, the order of ours / bare
             restic / tar rotated each round, each backup into a fresh repository; medians are
             reported, and the overhead also as the median of each round's own ratio
  --drill    also run `drill()` on the orchestrator's repository (restore + verify + load into
             a scratch PostgreSQL) and report its RTO estimate
  --keep     leave the temporary directory (dataset, repositories) in place for inspection

Everything created (the PostgreSQL container, the temporary directory) is removed at the end,
also on error or Ctrl-C. The last line printed is one JSON object with the figures.
"""

import argparse
import datetime as dt
import json
import operator
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from components.catalog import postgres as postgres_catalog  # noqa: E402
from components.model.plan import (  # noqa: E402
    BackupPlan,
    Checks,
    FilesSource,
    PostgresqlSource,
    Repository,
    Schedule,
    WalArchive,
)
from napdms_ops.backup import pitr, wal  # noqa: E402
from napdms_ops.backup.drill import drill  # noqa: E402
from napdms_ops.backup.hooks import postgresql as postgresql_hook  # noqa: E402

# The exact checksum query the hook runs.
from napdms_ops.backup.hooks.postgresql import _SUM, _TABLES  # noqa: E402
from napdms_ops.backup.restic import Restic  # noqa: E402
from napdms_ops.backup.restore import restore, restore_to  # noqa: E402
from napdms_ops.backup.run import context_for, repository, run_backup  # noqa: E402
from tests.live.engine import ensure_engine  # noqa: E402
from tests.live.standins import standin_image  # noqa: E402

MB = 1_000_000
KiB = 1024
MiB = 1024 * 1024
SEED = 20240601
RUN = uuid.uuid4().hex[:8]
LABEL = "napdms.bench"
DATABASE = "napdms"
DOCS_SHARE = 0.82
PSQL = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", DATABASE]
"""psql, unaligned and quiet, stopping at the first error, on the bench's database."""
PG_PASSWORD = "bench-" + RUN  # a throw-away container on 127.0.0.1, removed at the end
SHIP_INTERVAL_S = 60.0  # WalArchive's default, as the program declares it
RPO_COMMITS = 20
RPO_GAP_S = (2.0, 14.0)  # random seconds between two of the RPO commits
GOALS = {
    "incremental_over_full": 0.10,
    "overhead_vs_restic": 1.10,
    "rpo_s_p95": 300.0,
}
# The program's PostgreSQL (components/catalog/postgres.py): its pg_hba and its server settings.
PG_HBA = postgres_catalog.files(None)[postgres_catalog.HBA_FILE]
PG_SETTINGS = [
    ("hba_file=/etc/napdms-bench/pg_hba.conf" if arg.startswith("hba_file=") else arg)
    for arg in postgres_catalog.SPEC.command[1:]
]


# ----------------------------------------------------------------------------- helpers


def drop_caches() -> bool:
    """Write back dirty pages and drop the page cache; False when the kernel refuses."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(action):
    """Seconds of `action()` including a final sync (so written data reached the disk), and its
    result."""
    start = time.perf_counter()
    result = action()
    os.sync()
    return time.perf_counter() - start, result


def sh(command: str, env=None, capture: bool = False) -> str:
    """Run a bash pipeline with pipefail; fail loudly with its stderr."""
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"`{command}` exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return done.stdout if capture else ""


def tree_size(path: Path) -> tuple[int, int]:
    """Regular files and their bytes below `path`."""
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            entry = os.path.join(root, name)
            if os.path.isfile(entry) and not os.path.islink(entry):
                files += 1
                size += os.path.getsize(entry)
    return files, size


def du(path: Path) -> int:
    return tree_size(path)[1]


def mbs(size: int, seconds: float) -> float:
    return size / MB / seconds if seconds > 0 else float("inf")


def rotated(items: list, by: int) -> list:
    """`items` started at position `by`: run k of the alternatives goes first in round k."""
    by %= len(items)
    return items[by:] + items[:by]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ResticCalls:
    """Observes (does not change) every restic process the orchestrator starts: what, when, how
    long."""

    def __init__(self):
        self.calls: list[tuple[float, str, float]] = []  # (time.time() at start, what, seconds)
        run, command, dump = Restic.run, Restic.backup_command, Restic.dump
        calls = self.calls

        def timed_run(restic, *args, **kwargs):
            what = kwargs.get("action") or args[0]
            if what == "backup":
                what = "backup --stdin" if "--stdin" in args else "backup files"
                if "kind=wal" in args:
                    what = "backup wal-spool"
            if threading.current_thread().name.startswith("wal-"):
                what = "archiver: " + what
            elif what == "check":
                what = "check " + " ".join(a for a in args[1:] if not a.startswith("-"))
            started, clock = time.time(), time.perf_counter()
            try:
                return run(restic, *args, **kwargs)
            finally:
                calls.append((started, what, time.perf_counter() - clock))

        def timed_command(restic, argv, *args, **kwargs):
            started, clock = time.time(), time.perf_counter()
            try:
                return command(restic, argv, *args, **kwargs)
            finally:
                what = f"{argv[0]} {argv[-1]}" if argv[0] == "pg_dump" else argv[0]
                calls.append((started, f"{what} | backup --stdin", time.perf_counter() - clock))

        def timed_dump(restic, *args, **kwargs):
            started, clock = time.time(), time.perf_counter()
            try:
                return dump(restic, *args, **kwargs)
            finally:
                calls.append((started, "dump", time.perf_counter() - clock))

        Restic.run, Restic.backup_command, Restic.dump = timed_run, timed_command, timed_dump

    def between(self, start: float, end: float, archiver: bool = False) -> list[tuple[str, float]]:
        """The calls started in [start, end): the run's own, or (`archiver`) the WAL
        archiver's threads'."""
        return [
            (what, seconds)
            for began, what, seconds in self.calls
            if start <= began < end and what.startswith("archiver: ") == archiver
        ]

    @staticmethod
    def show(calls: list[tuple[str, float]]) -> str:
        return ", ".join(f"{what} {seconds:.1f}" for what, seconds in calls)


CALLS = ResticCalls()


class ShipLog:
    """Observes (does not change) every shipment of a WAL spool: `wal.ship_now`, which the
    archiver's shipper thread calls every ship_interval_s. Records the shipment's start as the
    state file has it (`last_ship`: the spool state from then on is in the repository), when the
    call returned (the snapshot is written), and whether it succeeded."""

    def __init__(self):
        self.ships: list[tuple[float | None, float, bool, str]] = []
        original = wal.ship_now
        ships = self.ships

        def observed(plan, source, restic):
            ok = original(plan, source, restic)
            finished = time.time()
            state = wal.read_state(plan.state_dir, source.service)
            ships.append((state.last_ship, finished, ok, plan.state_dir))
            return ok

        wal.ship_now = observed

    def first_after(self, moment: float, state_dir: str) -> tuple[float, float] | None:
        """(start, end) of the first successful shipment of `state_dir`'s archiver that started
        at or after `moment`."""
        found = [
            (started, finished)
            for started, finished, ok, where in self.ships
            if ok and where == state_dir and started is not None and started >= moment
        ]
        return min(found) if found else None


SHIPS = ShipLog()


# ----------------------------------------------------------------------------- documents


class Content:
    """Deterministic file content: random bytes (PDF/DOCX-like) or word text (zstd -3: ~0.32)."""

    def __init__(self, seed: int):
        rng = random.Random(seed)
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        weights = [
            12.7,
            9.1,
            8.2,
            7.5,
            7.0,
            6.7,
            6.3,
            6.1,
            6.0,
            4.3,
            4.0,
            2.8,
            2.8,
            2.4,
            2.4,
            2.2,
            2.0,
            2.0,
            1.9,
            1.5,
            1.0,
            0.8,
            0.15,
            0.15,
            0.1,
            0.07,
        ]
        lengths = [2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9, 10, 12]
        base = ["".join(rng.choices(letters, weights, k=rng.choice(lengths))) for _ in range(6000)]
        zipf = [1 / (i + 1) for i in range(len(base))]
        vocab = []
        for _ in range(65536):
            word = rng.choices(base, zipf)[0]
            roll = rng.random()
            if roll < 0.06:
                word += ","
            elif roll < 0.10:
                word += ".\n" if rng.random() < 0.3 else ". "
            elif roll < 0.12:
                word = str(rng.randrange(100000))
            vocab.append((word if word.endswith((" ", "\n")) else word + " ").encode())
        self._vocab = vocab
        self._mean = sum(map(len, vocab)) / len(vocab)

    def text(self, rng: random.Random, size: int) -> bytes:
        out, have = [], 0
        while have < size:
            tokens = min(65536, int((size - have) / self._mean) + 16)
            index = memoryview(rng.randbytes(2 * tokens)).cast("H")
            piece = (
                b"".join(operator.itemgetter(*index)(self._vocab))
                if tokens > 1
                else self._vocab[index[0]]
            )
            out.append(piece)
            have += len(piece)
        return b"".join(out)[:size]

    def write(self, path: Path, rng: random.Random, size: int, kind: str, mode: str = "wb") -> None:
        """Write `size` bytes of `kind` ("random", "text" or "mixed": halves) in 8 MiB blocks."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, mode) as handle:
            written = 0
            while written < size:
                block = min(8 * MiB, size - written)
                use = kind if kind != "mixed" else ("text" if written < size // 2 else "random")
                handle.write(rng.randbytes(block) if use == "random" else self.text(rng, block))
                written += block


DEPARTMENTS = ("legal", "finance", "hr", "sales", "engineering", "procurement", "board", "quality")


def document_plan(total: int, seed: int) -> list[tuple[str, int, str]]:
    """(relative path, size, kind) of every document: 20 % small, 40 % medium, 40 % large by
    bytes."""
    rng = random.Random(seed)
    files: list[tuple[str, int, str]] = []

    def place(prefix: str, index: int, kind: str) -> str:
        ext = (
            rng.choice((".pdf", ".docx", ".jpg"))
            if kind == "random"
            else rng.choice((".txt", ".xml", ".csv", ".eml"))
        )
        return f"{rng.choice(DEPARTMENTS)}/{2015 + rng.randrange(11)}/{prefix}-{index:06d}{ext}"

    large_budget = int(total * 0.40)
    large = 0
    while large_budget - large >= 20 * MiB:
        size = min(rng.randint(20 * MiB, 100 * MiB), large_budget - large)
        kind = ("random", "text", "mixed")[len(files) % 3]
        files.append((place("scan", len(files), kind), size, kind))
        large += size
    medium_budget = int(total * 0.40) + (large_budget - large)
    medium = 0
    while medium < medium_budget:
        size = min(rng.randint(MiB // 2, 2 * MiB), medium_budget - medium)
        kind = "random" if rng.random() < 0.55 else "text"
        files.append((place("doc", len(files), kind), size, kind))
        medium += size
    small = 0
    small_budget = total - large - medium
    while small < small_budget:
        size = min(rng.randint(4 * KiB, 64 * KiB), small_budget - small)
        kind = "random" if rng.random() < 0.55 else "text"
        files.append((place("note", len(files), kind), size, kind))
        small += size
    return files


def generate_documents(root: Path, total: int, content: Content) -> list[tuple[str, int, str]]:
    listed = document_plan(total, SEED)
    for index, (relative, size, kind) in enumerate(listed):
        content.write(root / relative, random.Random(SEED * 1_000_003 + index), size, kind)
    return listed


def change_documents(
    root: Path, listed: list[tuple[str, int, str]], content: Content, share: float = 0.01
) -> dict:
    """Rewrite or append to ~`share` of the document bytes (small and medium files), add a few new
    ones."""
    rng = random.Random(SEED + 1)
    total = sum(size for _, size, _ in listed)
    budget = int(total * share)
    candidates = [entry for entry in listed if entry[1] < 20 * MiB]
    rng.shuffle(candidates)
    written = rewritten = appended = 0
    for relative, size, kind in candidates:
        if written >= budget * 0.9:
            break
        if rng.random() < 0.5:
            content.write(root / relative, rng, size, "random" if kind == "random" else "text")
            written += size
            rewritten += 1
        else:
            extra = rng.randint(4 * KiB, 64 * KiB)
            content.write(root / relative, rng, extra, "text", mode="ab")
            written += extra
            appended += 1
    new = 0
    while written < budget:
        size = min(rng.randint(4 * KiB, 2 * MiB), budget - written)
        content.write(root / "inbox" / f"new-{new:04d}.pdf", rng, max(size, 1), "random")
        written += max(size, 1)
        new += 1
    return {
        "bytes_written": written,
        "rewritten": rewritten,
        "appended": appended,
        "new": new,
        "share_of_docs": written / total,
    }


# ----------------------------------------------------------------------------- PostgreSQL


class Postgres:
    """The postgres stand-in in Docker, published on 127.0.0.1:<free port>, data on the local
    disk."""

    def __init__(self, client, workdir: Path):
        self.client = client
        self.port = free_port()
        self.password_file = workdir / "secrets" / "pg-password"
        self.password_file.parent.mkdir(parents=True)
        self.password_file.write_text(PG_PASSWORD + "\n")
        self.password_file.chmod(0o444)
        data = workdir / "pgdata"
        data.mkdir()
        config = workdir / "pgconfig"
        config.mkdir(mode=0o755)
        (config / "pg_hba.conf").write_text(PG_HBA)
        (config / "pg_hba.conf").chmod(0o444)
        self.container = client.containers.run(
            standin_image("postgres", client),
            # Small shared buffers so the dumps read through the (dropped) page cache, not
            # PostgreSQL's own; fsync off only speeds up generating the data, reads do not depend
            # on it. The WAL settings are the program's (components/catalog/postgres.py), and
            # full_page_writes and synchronous_commit keep their defaults, as there: the WAL the
            # archive ships and the commits the RPO is measured on are the real ones.
            [
                "postgres",
                *PG_SETTINGS,
                "-c",
                "shared_buffers=32MB",
                "-c",
                "fsync=off",
                "-c",
                "max_wal_size=4GB",
                "-c",
                "checkpoint_timeout=30min",
            ],
            name=f"napdms-bench-backup-{RUN}",
            labels={LABEL: RUN},
            environment={
                "POSTGRES_PASSWORD_FILE": "/run/secrets/pg-password",
                "POSTGRES_DB": DATABASE,
            },
            volumes={
                str(self.password_file.parent): {"bind": "/run/secrets", "mode": "ro"},
                str(data): {"bind": "/var/lib/postgresql/data", "mode": "rw"},
                str(config): {"bind": "/etc/napdms-bench", "mode": "ro"},
            },
            ports={"5432/tcp": ("127.0.0.1", self.port)},
            detach=True,
        )
        self.env = dict(
            os.environ,
            PGHOST="127.0.0.1",
            PGPORT=str(self.port),
            PGUSER="postgres",
            PGPASSWORD=PG_PASSWORD,
        )
        deadline = time.monotonic() + 120
        while True:
            done = subprocess.run(
                ["psql", "-X", "-q", "-d", DATABASE, "-c", "SELECT 1"],
                env=self.env,
                capture_output=True,
            )
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                log = self.container.logs(tail=20).decode(errors="replace")
                raise RuntimeError(f"PostgreSQL did not answer within 120 s: {log}")
            time.sleep(0.5)

    def sql(self, statement: str) -> str:
        done = subprocess.run(
            [*PSQL, "-c", statement],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()}")
        return done.stdout.strip()

    def fill(self, target: int) -> dict:
        """Three tables, ~target bytes on disk: documents (text, numeric), attachments (bytea),
        ledger (numeric)."""
        scale = target / 360e6
        self.rows = rows = {
            "documents": int(150_000 * scale),
            "attachments": int(24_000 * scale),
            "ledger": int(1_000_000 * scale),
        }
        self.sql(
            "CREATE TABLE documents (id bigint PRIMARY KEY, title text NOT NULL, "
            "body text NOT NULL, amount numeric(12,2) NOT NULL, created timestamptz NOT NULL, "
            "status smallint NOT NULL)"
        )
        self.sql(
            f"INSERT INTO documents SELECT i, 'Document ' || i || ' ' || md5(i::text), "
            f"(SELECT string_agg(md5(i::text || ':' || j), ' ') FROM generate_series(1, 16) j), "
            f"round((i % 100000) * 1.37, 2), "
            f"timestamptz '2020-01-01 00:00+00' + i * interval '7 minutes', i % 5 "
            f"FROM generate_series(1, {rows['documents']}) i"
        )
        self.sql("CREATE INDEX documents_created ON documents (created)")
        self.sql(
            "CREATE TABLE attachments (id bigint PRIMARY KEY, document_id bigint NOT NULL, "
            "name text NOT NULL, content bytea NOT NULL)"
        )
        self.sql(
            f"INSERT INTO attachments SELECT i, 1 + i % {rows['documents']}, "
            f"'scan-' || i || '.pdf', "
            f"(SELECT decode(string_agg(md5(i::text || '/' || j), ''), 'hex') "
            f"FROM generate_series(1, 256) j) "
            f"FROM generate_series(1, {rows['attachments']}) i"
        )
        self.sql(
            "CREATE TABLE ledger (id bigint PRIMARY KEY, account integer NOT NULL, "
            "amount numeric(14,2) NOT NULL, booked date NOT NULL, memo text NOT NULL)"
        )
        self.sql(
            f"INSERT INTO ledger SELECT i, i % 5000, "
            f"round(((i::bigint * 7919) % 1000000) / 100.0 - 5000, 2), "
            f"date '2015-01-01' + i % 3650, 'memo ' || substr(md5(i::text), 1, 20) "
            f"FROM generate_series(1, {rows['ledger']}) i"
        )
        self.sql("CREATE INDEX ledger_account_booked ON ledger (account, booked)")
        self.sql("VACUUM ANALYZE")
        self.sql("CHECKPOINT")
        return rows

    def change(self) -> int:
        """Update ~1 % of the rows of each table and add 1 % new attachments; returns rows
        touched."""
        touched = 0
        for statement in (
            (
                "UPDATE documents SET body = body || ' rev2', amount = amount + 1, "
                "status = (status + 1) % 5 WHERE id % 100 = 42"
            ),
            "UPDATE ledger SET amount = amount + 0.01 WHERE id % 100 = 42",
            "UPDATE attachments SET name = name || '.v2' WHERE id % 100 = 42",
            (
                f"INSERT INTO attachments SELECT i, 1 + i % {self.rows['documents']}, "
                f"'scan-' || i || '.pdf', "
                f"(SELECT decode(string_agg(md5(i::text || '/' || j), ''), 'hex') "
                f"FROM generate_series(1, 256) j) "
                f"FROM generate_series({self.rows['attachments'] + 1}, "
                f"{self.rows['attachments'] + self.rows['attachments'] // 100}) i"
            ),
        ):
            out = subprocess.run(
                ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", DATABASE, "-c", statement],
                env=self.env,
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise RuntimeError(out.stderr)
            touched += int(out.stdout.split()[-1])
        self.sql("CHECKPOINT")
        return touched

    def size(self) -> int:
        return int(self.sql(f"SELECT pg_database_size('{DATABASE}')"))

    def create_marks(self) -> None:
        self.sql(
            "CREATE TABLE rpo_marks (seq integer PRIMARY KEY, note text NOT NULL, "
            "at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )

    def commit_mark(self, seq: int, note: str) -> tuple[float, str]:
        """Insert row `seq` into rpo_marks in its own transaction; the time the COMMIT had
        returned (the psql process ended) and a WAL position at or after the commit record."""
        done = subprocess.run(
            [
                *PSQL,
                "-c",
                f"INSERT INTO rpo_marks (seq, note) VALUES ({seq}, '{note}')",
                "-c",
                "SELECT pg_current_wal_lsn()",
            ],
            env=self.env,
            capture_output=True,
            text=True,
        )
        committed = time.time()
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()}")
        return committed, done.stdout.strip().splitlines()[-1]

    def wait_received(self, lsn: str, timeout: float = 60) -> float:
        """When pg_receivewal had flushed WAL up to `lsn` into the spool (it reports its flush
        position at once, --synchronous)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            flushed = self.sql(
                f"SELECT bool_or(flush_lsn >= '{lsn}'::pg_lsn) FROM pg_stat_replication "
                "WHERE application_name = 'pg_receivewal'"
            )
            if flushed == "t":
                return time.time()
            time.sleep(0.02)
        raise RuntimeError(f"pg_receivewal did not receive {lsn} within {timeout:.0f} s")

    def drop_slot(self, slot: str) -> None:
        self.sql(
            f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name = '{slot}' AND NOT active"
        )

    def checksum_pass(self) -> float:
        """The hook's table-checksum queries alone, one session, no dump running beside them."""
        tables = self.sql(_TABLES).splitlines()
        script = (
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
            + "".join(_SUM.format(table=t) + ";\n" for t in tables)
            + "COMMIT;\n"
        )
        start = time.perf_counter()
        done = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", DATABASE],
            input=script,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return time.perf_counter() - start

    def remove(self) -> None:
        try:
            self.container.remove(force=True, v=True)
        except Exception as error:  # noqa: BLE001 - report, the temp dir goes anyway
            print(f"could not remove container {self.container.name}: {error}")


# ----------------------------------------------------------------------------- the three ways


class Bench:
    def __init__(self, work: Path, docs: Path, pg: Postgres):
        self.work, self.docs, self.pg = work, docs, pg
        self.password_file = work / "restic-secrets" / "restic-password"
        self.password_file.parent.mkdir(mode=0o700)
        self.password_file.write_text("bench-restic-" + RUN + "\n")
        self.password_file.chmod(0o400)
        self.caches_dropped = True
        self.target = work / "target"  # the "backup disk": every repository and archive lives here
        self.target.mkdir()
        self.timezone = "Europe/Berlin"
        self.archivers: list[tuple[wal.Archiver, str]] = []

    def drop(self) -> None:
        self.caches_dropped &= drop_caches()

    # -- ours

    def plan(self, name: str, archived: bool = True) -> BackupPlan:
        """Our plan for repository `name`: the PostgreSQL source with its WAL archived (PITR, as
        the program declares it) unless `archived` is False (the logical dump alone)."""
        today = dt.datetime.now(ZoneInfo(self.timezone)).day
        return BackupPlan(
            stack="bench",
            host_tag="bench",
            repository=Repository(
                url=str(self.target / f"ours-{name}"), password_file=str(self.password_file)
            ),
            sources=[
                FilesSource(service="documents", paths=[str(self.docs)]),
                PostgresqlSource(
                    service="postgres",
                    host="127.0.0.1",
                    port=self.pg.port,
                    password_file=str(self.pg.password_file),
                    wal=WalArchive(
                        spool_dir=str(self.work / f"spool-{name}"),
                        slot=f"bench_{name}",
                        ship_interval_s=SHIP_INTERVAL_S,
                    )
                    if archived
                    else None,
                ),
            ],
            schedule=Schedule(retries=0, retry_delay_s=0, timezone=self.timezone),
            # The ordinary daily check (5 % of the data), not the monthly full read.
            checks=Checks(full_on_day=1 if today != 1 else 2),
            state_dir=str(self.work / f"state-{name}"),
            cache_dir=str(self.work / f"cache-{name}"),
        )

    # -- the WAL archiver

    def start_archiver(self, plan: BackupPlan) -> wal.Archiver:
        source = next(s for s in plan.sources if isinstance(s, PostgresqlSource))
        archiver = wal.Archiver(plan, source, repository(plan)).start()
        self.archivers.append((archiver, source.wal.slot))
        # Streaming before the measured run starts: the slot exists, pg_receivewal is connected.
        deadline = time.monotonic() + 60
        while self.pg.sql(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_receivewal'"
        ) in ("0", ""):
            if time.monotonic() > deadline:
                raise RuntimeError("pg_receivewal did not connect within 60 s")
            time.sleep(0.2)
        return archiver

    def stop_archiver(self, archiver: wal.Archiver, drop_slot: bool) -> None:
        archiver.stop()
        self.archivers = [(a, slot) for a, slot in self.archivers if a is not archiver]
        if drop_slot:
            self.pg.drop_slot(archiver.source.wal.slot)

    def stop_archivers(self) -> None:
        for archiver, slot in list(self.archivers):
            try:
                archiver.stop()
                self.pg.drop_slot(slot)
            except Exception as error:  # noqa: BLE001 - report, the container goes anyway
                print(f"could not stop the archiver of {slot}: {error}")
        self.archivers = []

    def ours_backup(self, plan: BackupPlan) -> dict:
        calls: list[float] = []

        def clock() -> float:
            calls.append(time.time())
            return calls[-1]

        self.drop()
        began = time.time()
        seconds, outcome = timed(lambda: run_backup(plan, clock=clock))
        ended = time.time()
        state, manifest = outcome.state, outcome.manifest
        if not state.success or manifest is None:
            raise RuntimeError(f"backup run failed: {state.reason}: {state.error}")
        if state.check_success is not True or state.error:
            raise RuntimeError(f"maintenance after the run failed: {state.error}")
        hook = state.finished - state.started
        postgres = manifest.services["postgres"]
        figures = {
            "seconds": seconds,
            "hook_s": hook,
            "dumps_s": manifest.finished - manifest.started,
            "manifest_store_s": state.finished - manifest.finished,
            "maintenance_s": seconds - hook,
            "bytes": manifest.bytes,
            "bytes_added": manifest.bytes_added,
            "services_s": {name: record.seconds for name, record in manifest.services.items()},
            "parts": {
                part.path: part.bytes
                for record in manifest.services.values()
                for part in record.parts
            },
            "hook_calls": CALLS.between(began, state.finished),
            "maintenance_calls": CALLS.between(state.finished, ended),
            "archiver_calls": CALLS.between(began, ended, archiver=True),
            "base_bytes": postgres.base
            and next(p.bytes for p in postgres.parts if p.snapshot == postgres.base.part),
            "base_added": postgres.base
            and next(p.bytes_added for p in postgres.parts if p.snapshot == postgres.base.part),
            "dumped": postgres.dumped is not None and postgres.dumped >= began,
            "dump_bytes": sum(p.bytes for p in postgres.logical_parts),
        }
        # run_backup asks the clock: start, manifest end, state end, after prune, after check.
        if len(calls) == 5 and calls[4] == state.check_time:
            figures["prune_s"] = calls[3] - calls[2]
            figures["check_s"] = calls[4] - calls[3]
        return figures

    def ours_restore(self, plan: BackupPlan, into: Path) -> dict:
        self.drop()
        began = time.time()
        seconds, report = timed(lambda: restore(plan, "latest", str(into)))
        return {
            "seconds": seconds,
            # What it put on disk, as for the baselines (RestoreReport.bytes also counts the
            # base backup, which `restore` leaves to point-in-time recovery).
            "bytes": tree_size(into)[1],
            "report_bytes": report.bytes,
            "inner_s": report.seconds,
            "calls": CALLS.between(began, time.time()),
        }

    def postgres_hook_alone(self, name: str, checksums: bool) -> float:
        """The postgres hook by itself into a fresh repository, with or without its table-checksum
        pass.

        Without: `_SnapshotSession.table_sums` is replaced by a stub for this call only, to tell
        what the checksum pass costs while pg_dump and restic run beside it.
        """
        plan = self.plan(name, archived=False)
        restic = Restic(plan.repository, plan.cache_dir)
        restic.init()
        context = context_for(plan, restic, f"diag-{name}")
        source = next(s for s in plan.sources if s.hook == "postgresql")
        original = postgresql_hook._SnapshotSession.table_sums
        if not checksums:
            postgresql_hook._SnapshotSession.table_sums = lambda session: {}
        try:
            self.drop()
            seconds, record = timed(lambda: postgresql_hook.backup(source, context))
        finally:
            postgresql_hook._SnapshotSession.table_sums = original
        if checksums and not record.tables.get(DATABASE):
            raise RuntimeError("the postgres hook recorded no table sums")
        shutil.rmtree(self.target / f"ours-{name}", ignore_errors=True)
        return seconds

    def restic_fixed_cost(self, name: str, times: int = 3) -> float:
        """Median seconds of `restic cat config`: one process opening the repository (key
        derivation) and nothing else."""
        env = self.restic_env(name)
        samples = []
        for _ in range(times):
            start = time.perf_counter()
            sh("restic cat config", env, capture=True)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    # -- bare restic

    def restic_env(self, name: str) -> dict:
        env = {k: v for k, v in self.pg.env.items() if not k.startswith("RESTIC_")}
        env.update(
            RESTIC_REPOSITORY=str(self.target / f"restic-{name}"),
            RESTIC_PASSWORD_FILE=str(self.password_file),
            RESTIC_CACHE_DIR=str(self.work / f"cache-restic-{name}"),
        )
        return env

    @staticmethod
    def _summary(output: str) -> dict:
        for line in reversed(output.splitlines()):
            if '"summary"' in line:
                return json.loads(line)
        raise RuntimeError(f"restic printed no summary: {output[-300:]}")

    def restic_backup(self, name: str, init: bool = True) -> dict:
        env = self.restic_env(name)
        self.drop()
        start = time.perf_counter()
        if init:
            sh("restic init -q", env)
        after_init = time.perf_counter()
        docs = self._summary(
            sh(f"restic backup --json --host bench {self.docs}", env, capture=True)
        )
        after_docs = time.perf_counter()
        dump = self._summary(
            sh(
                f"pg_dump -Fc -Z0 -d {DATABASE} | restic backup --json --stdin "
                f"--stdin-filename /postgres/{DATABASE}.dump --host bench",
                env,
                capture=True,
            )
        )
        os.sync()
        end = time.perf_counter()
        return {
            "seconds": end - start,
            "init_s": after_init - start,
            "docs_s": after_docs - after_init,
            "pg_s": end - after_docs,
            "bytes": docs["total_bytes_processed"] + dump["total_bytes_processed"],
            "bytes_added": docs["data_added"] + dump["data_added"],
            "snapshots": [docs["snapshot_id"], dump["snapshot_id"]],
        }

    def restic_restore(self, name: str, snapshots: list[str], into: Path) -> dict:
        env = self.restic_env(name)
        self.drop()
        seconds, _ = timed(
            lambda: [
                sh(f"restic restore -q {snapshot} --target {into}", env) for snapshot in snapshots
            ]
        )
        return {"seconds": seconds, "bytes": tree_size(into)[1]}

    # -- tar | zstd

    def tar_backup(self, name: str) -> dict:
        out = self.target / f"tar-{name}"
        out.mkdir()
        self.drop()

        def run():
            sh(f"tar -C {self.docs} -cf - . | zstd -T0 -3 -q -o {out}/docs.tar.zst", self.pg.env)
            after_docs = time.perf_counter()
            sh(
                f"pg_dump -Fc -Z0 -d {DATABASE} | zstd -T0 -3 -q -o {out}/{DATABASE}.dump.zst",
                self.pg.env,
            )
            return after_docs

        start = time.perf_counter()
        seconds, after_docs = timed(run)
        return {
            "seconds": seconds,
            "docs_s": after_docs - start,
            "pg_s": seconds - (after_docs - start),
            "stored": du(out),
            "dir": out,
        }

    def tar_restore(self, archive: Path, into: Path) -> dict:
        (into / "docs").mkdir(parents=True)
        self.drop()
        seconds, _ = timed(
            lambda: (
                sh(f"zstd -dc -q {archive}/docs.tar.zst | tar -x -C {into}/docs"),
                sh(f"zstd -d -q {archive}/{DATABASE}.dump.zst -o {into}/{DATABASE}.dump"),
            )
        )
        return {"seconds": seconds, "bytes": tree_size(into)[1]}

    def pitr_restore(self, plan: BackupPlan, moment: float, into: Path) -> dict:
        """`restore_to` of the database to `moment` into an empty directory (caches dropped,
        final sync), then the recovered cluster started to read what it holds."""
        self.drop()
        moment_iso = dt.datetime.fromtimestamp(moment, dt.UTC).isoformat()
        seconds, recovery = timed(
            lambda: restore_to(plan, moment_iso, str(into), ["postgres"], str(self.work))
        )
        data = into / "postgres"
        return {
            "seconds": seconds,
            "bytes": du(data),
            "recovery": recovery,
            "found": read_recovered(data, self.work / "pitr-check"),
        }

    def pg_dump_alone(self) -> tuple[float, int]:
        self.drop()
        start = time.perf_counter()
        size = int(sh(f"pg_dump -Fc -Z0 -d {DATABASE} | wc -c", self.pg.env, capture=True))
        return time.perf_counter() - start, size


def read_recovered(data: Path, directory: Path) -> dict:
    """Start the recovered cluster in `data` on a private socket (as the server's owner) and
    read the RPO marks and the attachments' count; stop it again."""
    bin_dir = pitr.server_binaries()
    directory.mkdir()
    hba = directory / "pg_hba.conf"
    hba.write_text("local all all trust\n")
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(directory, pitr.OWNER, pitr.OWNER)
        shutil.chown(hba, pitr.OWNER, pitr.OWNER)
        as_owner = ["runuser", "-u", pitr.OWNER, "--"]
    options = f"-c listen_addresses='' -k {directory} -c hba_file={hba} -c archive_mode=off"
    sh(
        " ".join(
            [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "300"]
            + ["-l", str(directory / "log"), "-o", f'"{options}"', "start"]
        )
    )
    env = dict(os.environ, PGHOST=str(directory), PGPORT="5432", PGUSER="postgres")
    env.pop("PGPASSWORD", None)
    try:
        marks = sh(
            f"psql -X -q -A -t -d {DATABASE} -c "
            "\"SELECT coalesce(string_agg(seq::text, ',' ORDER BY seq), '') FROM rpo_marks\"",
            env,
            capture=True,
        ).strip()
        attachments = int(
            sh(
                f"psql -X -q -A -t -d {DATABASE} -c 'SELECT count(*) FROM attachments'",
                env,
                capture=True,
            )
        )
    finally:
        subprocess.run(
            [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            cwd="/",
        )
    return {"marks": [int(m) for m in marks.split(",") if m], "attachments": attachments}


def restic_process_s(calls: list[tuple[str, float]]) -> float:
    """Seconds in the restic processes of `calls` other than the ones moving the bulk (files,
    pg_dump, pg_basebackup): what each process's start and repository open cost."""
    bulk = ("backup files", "pg_dump ", "pg_basebackup ")
    return sum(seconds for what, seconds in calls if not what.startswith(bulk))


def describe(run: dict) -> str:
    """What one of our runs did with PostgreSQL."""
    base = (
        f"base backup {run['base_bytes'] / MB:.0f} MB read, {run['base_added'] / MB:.0f} MB added"
        if run["base_bytes"] is not None
        else "no base backup"
    )
    dump = (
        f"logical dump taken ({run['dump_bytes'] / MB:.0f} MB)"
        if run["dumped"]
        else "logical dump not due (the previous one reused)"
    )
    return f"{base}, {dump}, {len(run['archiver_calls'])} archiver shipments beside it"


def nearest_rank(values: list[float], share: float) -> float:
    """The `share` quantile of `values` by nearest rank (p95 of 20: the 19th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, -(-int(share * 100) * len(ordered) // 100) - 1)]


def measure_rpo(bench: Bench, plan: BackupPlan) -> dict:
    """With the plan's archiver running: RPO_COMMITS commits spaced by random seconds; for each,
    the wall time from its COMMIT returning to the end of the first shipment that holds it (one
    that started after pg_receivewal had flushed the commit into the spool). Then a moment two
    seconds after the last one, and two seconds later one more commit (so recovery to the moment
    has a commit after it to stop at: it must be absent after recovery), shipped too."""
    pg = bench.pg
    rng = random.Random(SEED + 2)
    commits = []
    began = time.time()
    for seq in range(1, RPO_COMMITS + 1):
        time.sleep(rng.uniform(*RPO_GAP_S))
        committed, lsn = pg.commit_mark(seq, f"rpo-{seq}")
        commits.append((seq, committed, pg.wait_received(lsn)))
    time.sleep(2.0)
    moment = time.time()
    time.sleep(2.0)
    after_committed, after_lsn = pg.commit_mark(RPO_COMMITS + 1, "after-the-moment")
    after_received = pg.wait_received(after_lsn)
    deadline = time.time() + 3 * SHIP_INTERVAL_S + 300
    while SHIPS.first_after(after_received, plan.state_dir) is None:
        if time.time() > deadline:
            raise RuntimeError("no shipment of the WAL spool holds the last commit")
        time.sleep(0.5)
    rpo, lag, ship_s = [], [], []
    for _seq, committed, received in commits:
        started, finished = SHIPS.first_after(received, plan.state_dir)
        rpo.append(finished - committed)
        lag.append(received - committed)
        ship_s.append(finished - started)
    shipments = [
        (started, finished)
        for started, finished, ok, where in SHIPS.ships
        if where == plan.state_dir and ok and started is not None and started >= began
    ]
    return {
        "rpo_s": rpo,
        "receive_lag_s": lag,
        "ship_s": ship_s,
        "commits_s": commits[-1][1] - began,
        "moment": moment,
        "last_seq": RPO_COMMITS,
        "after_seq": RPO_COMMITS + 1,
        "after_committed": after_committed,
        "shipments": len(shipments),
        "ship_failures": sum(
            1 for _s, _f, ok, where in SHIPS.ships if where == plan.state_dir and not ok
        ),
        "state": wal.read_state(plan.state_dir, "postgres"),
    }


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--drill", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    total = int(args.size_gb * 1e9)
    for tool in ("restic", "zstd", "tar", "pg_dump", "psql"):
        if not shutil.which(tool):
            sys.exit(
                f"{tool} is not installed; "
                "this benchmark needs restic, zstd, tar and the PostgreSQL client"
            )

    # Point-in-time recovery runs the server here, on the recovered data directory, whose
    # postgresql.conf and databases use the image's en_US.utf8 locale (the agent's image has it).
    if "en_US.utf8" not in sh("locale -a", capture=True).split():
        if os.geteuid() != 0 or not shutil.which("localedef"):
            sys.exit("the en_US.UTF-8 locale is missing: localedef -i en_US -f UTF-8 en_US.UTF-8")
        sh("localedef -i en_US -f UTF-8 en_US.UTF-8")
        print("generated the en_US.UTF-8 locale (localedef), which recovery needs")

    client = ensure_engine()
    work = Path(tempfile.mkdtemp(prefix="napdms-bench-backup-", dir="/tmp"))
    # The drill's scratch cluster (another user) must reach what sits below.
    work.chmod(0o755)
    pg = bench = None
    figures: dict = {"size_gb": args.size_gb, "runs": args.runs, "mb": "1e6 bytes"}
    began = time.perf_counter()
    med = statistics.median
    try:
        versions = {
            "restic": sh("restic version", capture=True).split()[1],
            "zstd": sh("zstd --version", capture=True).split(",")[0].split()[-1],
            "pg_dump": sh("pg_dump --version", capture=True).split()[2],
        }
        print(
            f"work dir {work} ({shutil.disk_usage(work).free / 1e9:.0f} GB free); "
            f"{os.cpu_count()} CPUs; "
            f"restic {versions['restic']}, zstd {versions['zstd']}, pg_dump {versions['pg_dump']}"
        )

        # -- dataset
        start = time.perf_counter()
        pg = Postgres(client, work)
        rows = pg.fill(total * (1 - DOCS_SHARE))
        db_size = pg.size()
        db_s = time.perf_counter() - start
        content = Content(SEED)
        docs = work / "docs"
        start = time.perf_counter()
        listed = generate_documents(docs, int(total * DOCS_SHARE), content)
        docs_files, docs_bytes = tree_size(docs)
        gen_s = time.perf_counter() - start
        bench = Bench(work, docs, pg)
        dump_s, dump_bytes = bench.pg_dump_alone()
        bench.drop()
        checksum_s = pg.checksum_pass()
        dataset = docs_bytes + dump_bytes
        sizes = [size for _, size, _ in listed]
        print(
            f"documents: {docs_files} files, {docs_bytes / MB:.0f} MB in {gen_s:.0f} s "
            f"({sum(s < MiB // 2 for s in sizes)} of 4-64 KiB, "
            f"{sum(MiB // 2 <= s < 20 * MiB for s in sizes)} of 0.5-2 MiB, "
            f"{sum(s >= 20 * MiB for s in sizes)} of 20-100 MiB; "
            f"{sum(k == 'random' for *_, k in listed)} random, "
            f"{sum(k == 'text' for *_, k in listed)} text, "
            f"{sum(k == 'mixed' for *_, k in listed)} half/half)"
        )
        print(
            f"database {DATABASE}: {rows} rows, {db_size / MB:.0f} MB on disk (pg_database_size), "
            f"loaded in {db_s:.0f} s; "
            f"pg_dump -Fc -Z0 writes {dump_bytes / MB:.0f} MB"
        )
        print(f"dataset = documents + dump = {dataset / MB:.0f} MB (MB = 1e6 bytes throughout)")
        dropped = (
            "yes" if bench.caches_dropped else "NO (not permitted); reads may come from memory"
        )
        print(f"page cache dropped before each phase: {dropped}")
        print()

        # -- full backups, alternating ours / bare restic / tar, each into a fresh repository
        ours_runs, restic_runs, tar_runs = [], [], []
        last = args.runs - 1

        def ours_full(run: int) -> None:
            # The archiver streams and ships from before the run on, and stops after it; the last
            # round's slot and spool stay for the incremental (the archiver resumes on them).
            plan = bench.plan(f"full{run}")
            archiver = bench.start_archiver(plan)
            try:
                ours_runs.append(bench.ours_backup(plan))
            finally:
                bench.stop_archiver(archiver, drop_slot=run != last)

        print(
            f"ours: PostgreSQL with its WAL archived (WalArchive, ship_interval_s="
            f"{SHIP_INTERVAL_S:.0f}, the plan's default; logical_dump_days="
            f"{WalArchive(spool_dir='/x').logical_dump_days}): the archiver runs during our runs"
        )
        for run in range(args.runs):
            steps = [
                lambda run=run: ours_full(run),
                lambda run=run: restic_runs.append(bench.restic_backup(f"full{run}")),
                lambda run=run: tar_runs.append(bench.tar_backup(f"full{run}")),
            ]
            for step in rotated(steps, run):
                step()
            o, r, t = ours_runs[-1], restic_runs[-1], tar_runs[-1]
            print(
                f"full backup {run + 1}/{args.runs}: ours {o['hook_s']:.1f} s "
                f"(+{o['maintenance_s']:.1f} s check/prune; {describe(o)}), "
                f"bare restic {r['seconds']:.1f} s, tar|zstd {t['seconds']:.1f} s"
            )
        ours_plan = bench.plan(f"full{last}")
        # The last round's repositories stay for the incremental and the restores.
        for run in range(last):
            for name in (f"ours-full{run}", f"restic-full{run}", f"tar-full{run}"):
                shutil.rmtree(bench.target / name, ignore_errors=True)

        # -- what the PostgreSQL part costs: the hook alone with and without its checksum pass
        with_sums, without_sums = [], []
        for run in range(2):
            for checksums in (True, False) if run == 0 else (False, True):
                (with_sums if checksums else without_sums).append(
                    bench.postgres_hook_alone(f"diag{run}{int(checksums)}", checksums)
                )
        fixed_s = bench.restic_fixed_cost(f"full{last}")
        print(
            "postgres hook alone (2 runs each, fresh repositories): "
            f"{med(with_sums):.1f} s with the table checksums, {med(without_sums):.1f} s without; "
            f"one restic process that only opens the repository: {fixed_s:.2f} s"
        )

        # -- 1 % change, incrementals. The archiver runs again (on the last round's slot and
        #    spool) while the rows change; as in production, where it ships all day, the WAL of
        #    the change is shipped before the nightly run: the run waits for one shipment that
        #    started after the change.
        archiver = bench.start_archiver(ours_plan)
        changed = change_documents(docs, listed, content)
        rows_touched = pg.change()
        changed_at = time.time()
        while SHIPS.first_after(changed_at, ours_plan.state_dir) is None:
            if time.time() > changed_at + 3 * SHIP_INTERVAL_S + 300:
                raise RuntimeError("the archiver shipped nothing after the change")
            time.sleep(0.5)
        print(
            f"waited {time.time() - changed_at:.0f} s for the archiver to ship the change's WAL "
            f"(spool {du(Path(ours_plan.sources[1].wal.spool_dir)) / MB:.0f} MB)"
        )
        docs_files_after, docs_bytes_after = tree_size(docs)
        print(
            f"change: {changed['rewritten']} files rewritten, {changed['appended']} appended to, "
            f"{changed['new']} new: {changed['bytes_written'] / MB:.1f} MB written = "
            f"{changed['share_of_docs'] * 100:.2f} % of the document bytes; "
            f"{rows_touched} rows updated or inserted (~1 % of {sum(rows.values())}, "
            "spread over every table)"
        )
        incremental = bench.ours_backup(ours_plan)
        bench.stop_archiver(archiver, drop_slot=False)
        restic_incremental = bench.restic_backup(f"full{last}", init=False)
        print(
            f"incremental: ours {incremental['hook_s']:.1f} s "
            f"(+{incremental['maintenance_s']:.1f} s check/prune; {describe(incremental)}), "
            f"bare restic {restic_incremental['seconds']:.1f} s"
        )

        # -- RPO: commits while the archiver runs, each timed to the end of the shipment that
        #    holds it; then point-in-time recovery to a moment after the last of them
        pg.create_marks()
        archiver = bench.start_archiver(ours_plan)
        try:
            rpo = measure_rpo(bench, ours_plan)
        finally:
            bench.stop_archiver(archiver, drop_slot=True)
        rpo_p95, rpo_max = nearest_rank(rpo["rpo_s"], 0.95), max(rpo["rpo_s"])
        print(
            f"rpo: {RPO_COMMITS} commits over {rpo['commits_s']:.0f} s "
            f"(ship_interval_s={SHIP_INTERVAL_S:.0f}): commit -> end of the shipment holding it "
            f"p50 {med(rpo['rpo_s']):.1f} s, p95 {rpo_p95:.1f} s, max {rpo_max:.1f} s; "
            f"commit -> in the spool max {max(rpo['receive_lag_s']) * 1000:.0f} ms; "
            f"a shipment takes {med(rpo['ship_s']):.1f} s (median); "
            f"{rpo['shipments']} shipments, {rpo['ship_failures']} failed; "
            f"state: last_ship {rpo['state'].last_ship:.0f}, "
            f"receiver restarts {rpo['state'].receiver_restarts}, "
            f"gaps {rpo['state'].slot_lost}"
        )
        attachments_now = int(pg.sql("SELECT count(*) FROM attachments"))
        pitr_result = bench.pitr_restore(ours_plan, rpo["moment"], work / "pitr")
        found, recovery = pitr_result["found"], pitr_result["recovery"]
        pitr_ok = (
            found["marks"] == list(range(1, rpo["last_seq"] + 1))
            and found["attachments"] == attachments_now
        )
        print(
            f"pitr: restore_to(moment {rpo['moment'] - rpo['after_committed']:+.1f} s before "
            f"the commit after it) {pitr_result['seconds']:.1f} s for "
            f"{pitr_result['bytes'] / MB:.0f} MB of data directory "
            f"({mbs(pitr_result['bytes'], pitr_result['seconds']):.1f} MB/s; database "
            f"{db_size / MB:.0f} MB at the start); base of run {recovery.base_run}, "
            f"{recovery.epochs} epochs, {recovery.wal_files} WAL files; recovered: marks "
            f"{min(found['marks'], default='-')}..{max(found['marks'], default='-')} "
            f"({len(found['marks'])}; #{rpo['after_seq']} "
            f"{'present: WRONG' if rpo['after_seq'] in found['marks'] else 'absent, right'}), "
            f"attachments {found['attachments']} of {attachments_now} -> "
            f"{'ok' if pitr_ok else 'WRONG'}"
        )
        shutil.rmtree(work / "pitr", ignore_errors=True)
        shutil.rmtree(work / "pitr-check", ignore_errors=True)

        # -- restores of the post-change data (tar: its last archive), alternating, each into an
        #    empty dir
        ours_restores, restic_restores, tar_restores = [], [], []
        restored: dict = {}

        def restore_ours(run: int) -> None:
            into = work / f"restore-ours{run}"
            ours_restores.append(bench.ours_restore(ours_plan, into))
            restored["ours"] = tree_size(into / str(docs).lstrip("/"))
            shutil.rmtree(into)

        def restore_restic(run: int) -> None:
            into = work / f"restore-restic{run}"
            restic_restores.append(
                bench.restic_restore(f"full{last}", restic_incremental["snapshots"], into)
            )
            shutil.rmtree(into)

        def restore_tar(run: int) -> None:
            into = work / f"restore-tar{run}"
            tar_restores.append(bench.tar_restore(tar_runs[-1]["dir"], into))
            restored["tar"] = tree_size(into / "docs")
            shutil.rmtree(into)

        for run in range(args.runs):
            for step in rotated([restore_ours, restore_restic, restore_tar], run):
                step(run)
            print(
                f"restore {run + 1}/{args.runs}: ours {ours_restores[-1]['seconds']:.1f} s, "
                f"bare restic {restic_restores[-1]['seconds']:.1f} s, "
                f"tar|zstd {tar_restores[-1]['seconds']:.1f} s"
            )

        drill_report = None
        if args.drill:
            bench.drop()
            drill_report = drill(ours_plan, workdir=str(work))
            print(
                f"drill: restore {drill_report.restore_seconds:.1f} s "
                f"+ verify {drill_report.verify_seconds:.1f} s, "
                f"problems: {drill_report.problems or 'none'}"
            )
        print()

        # -- figures
        full_s = med([o["hook_s"] for o in ours_runs])
        full_total_s = med([o["seconds"] for o in ours_runs])
        restic_s = med([r["seconds"] for r in restic_runs])
        tar_s = med([t["seconds"] for t in tar_runs])
        ours_bytes = ours_runs[-1]["bytes"]
        restic_bytes = restic_runs[-1]["bytes"]

        def med_rate(results):
            return med([r["bytes"] / r["seconds"] for r in results])

        restore_rate = med_rate(ours_restores)
        restore_s = med([r["seconds"] for r in ours_restores])
        restic_restore_rate, tar_restore_rate = med_rate(restic_restores), med_rate(tar_restores)
        repo_ours, repo_restic = (
            du(bench.target / f"ours-full{last}"),
            du(bench.target / f"restic-full{last}"),
        )
        pg_ours = med([o["services_s"]["postgres"] for o in ours_runs])
        docs_ours = med([o["services_s"]["documents"] for o in ours_runs])
        pg_restic = med([r["pg_s"] for r in restic_runs])
        docs_restic = med([r["docs_s"] for r in restic_runs])
        init_restic = med([r["init_s"] for r in restic_runs])

        table = [
            (
                "full backup",
                "ours: hook phase (open+init, files, base backup, dumps + checksums, manifest)",
                ours_bytes,
                full_s,
            ),
            (
                "",
                "ours: whole run_backup (+ forget/prune + check --read-data-subset 5 %)",
                ours_bytes,
                full_total_s,
            ),
            (
                "",
                "bare restic (init, backup docs, pg_dump | backup --stdin)",
                restic_bytes,
                restic_s,
            ),
            ("", "tar | zstd -T0 -3, and pg_dump | zstd -T0 -3", dataset, tar_s),
            (
                "incremental",
                "ours: hook phase (files, base backup; MB counts the reused dump)",
                incremental["bytes"],
                incremental["hook_s"],
            ),
            ("", "ours: whole run_backup", incremental["bytes"], incremental["seconds"]),
            (
                "",
                "bare restic (same two commands, with a parent snapshot)",
                restic_incremental["bytes"],
                restic_incremental["seconds"],
            ),
            (
                "restore",
                "ours: restore(plan, 'latest', empty dir)",
                ours_restores[-1]["bytes"],
                restore_s,
            ),
            (
                "",
                "bare restic: restic restore of both snapshots",
                restic_restores[-1]["bytes"],
                med([r["seconds"] for r in restic_restores]),
            ),
            (
                "",
                "zstd -dc | tar -x, and zstd -d of the dump",
                tar_restores[-1]["bytes"],
                med([r["seconds"] for r in tar_restores]),
            ),
        ]
        print(f"{'phase':12} {'what':82} {'MB':>6} {'s':>6} {'MB/s':>6}")
        for phase, what, size, seconds in table:
            print(f"{phase:12} {what:82} {size / MB:6.0f} {seconds:6.1f} {mbs(size, seconds):6.1f}")
        print(
            f"(full backups and restores: medians of {args.runs} runs, the order of the three "
            "rotated each round, full backups each into a fresh repository; the incremental once; "
            "every time includes a final sync; bytes are what each read (backup) or put on disk "
            "(restore))"
        )
        print()
        last_full = ours_runs[-1]
        print(
            "where ours spends a full backup "
            "(medians; restic processes of the last run in order, seconds each):"
        )
        print(
            f"  documents: restic backup of the files           {docs_ours:5.1f} s   "
            f"bare restic: {docs_restic:5.1f} s"
        )
        print(
            f"  postgres: base backup + globals + each database's dump {pg_ours:5.1f} s   "
            f"bare restic pg_dump | restic: {pg_restic:5.1f} s"
        )
        print(
            "            (with the table-checksum pass beside the dump, and the WAL epoch "
            f"closed: {describe(last_full)})"
        )
        open_ours = med([o["hook_s"] - sum(o["services_s"].values()) for o in ours_runs])
        print(
            f"  repository open/init, manifest                  {open_ours:5.1f} s   "
            f"bare restic init: {init_restic:5.1f} s"
        )
        print(
            f"  hook phase: {len(last_full['hook_calls'])} restic processes "
            f"({CALLS.show(last_full['hook_calls'])}); bare restic: 3"
        )
        print(
            f"  after it: {len(last_full['maintenance_calls'])} restic processes "
            f"({CALLS.show(last_full['maintenance_calls'])})"
        )
        print(f"  incremental hook phase: {CALLS.show(incremental['hook_calls'])}")
        print(
            f"  incremental by service: documents "
            f"{incremental['services_s']['documents']:.1f} s, postgres (base backup + closing "
            f"the WAL epoch) {incremental['services_s']['postgres']:.1f} s, the rest (restic "
            f"open, manifest) {incremental['hook_s'] - sum(incremental['services_s'].values()):.1f}"
            f" s; {len(incremental['hook_calls'])} restic processes, "
            f"{restic_process_s(incremental['hook_calls']):.1f} s of them in processes that "
            f"move little data; archiver beside it: "
            f"{CALLS.show(incremental['archiver_calls']) or 'nothing'}"
        )
        print(
            f"  restore: {len(ours_restores[-1]['calls'])} restic processes "
            f"({CALLS.show(ours_restores[-1]['calls'])}); bare restic: 2"
        )
        print(
            f"  for scale, cold cache, each alone: pg_dump -Fc -Z0 | wc -c {dump_s:.1f} s; "
            f"the hook's checksum queries {checksum_s:.1f} s; "
            f"postgres hook {med(with_sums):.1f} s with checksums / "
            f"{med(without_sums):.1f} s without; "
            f"a restic process that only opens the repository {fixed_s:.2f} s"
        )
        print(
            f"stored: ours {repo_ours / MB:.0f} MB, bare restic {repo_restic / MB:.0f} MB "
            "(both after their incremental; ours also pruned the first run's data, "
            f"as retention keeps one run a day), tar|zstd {tar_runs[-1]['stored'] / MB:.0f} MB; "
            f"incremental added ours {incremental['bytes_added'] / MB:.0f} MB, "
            f"bare restic {restic_incremental['bytes_added'] / MB:.0f} MB"
        )
        print(
            f"restored documents: ours {restored['ours'][0]} files / "
            f"{restored['ours'][1] / MB:.0f} MB; "
            f"source after the change {docs_files_after} files / {docs_bytes_after / MB:.0f} MB; "
            f"tar (archive taken before the change) {restored['tar'][0]} files / "
            f"{restored['tar'][1] / MB:.0f} MB"
        )
        print()

        restore_hours = 500e9 / restore_rate / 3600
        incremental_ratio = incremental["hook_s"] / full_s
        overhead = full_s / restic_s
        # Each round's two backups ran minutes apart at most, so their ratio suffers less from a
        # neighbour's load. Every round appended to both lists, so they pair up exactly.
        paired = med(
            [o["hook_s"] / r["seconds"] for o, r in zip(ours_runs, restic_runs, strict=True)]
        )
        goals = {
            "restore_500gb_under_1h": restore_hours < 1,
            "incremental_under_10pct": incremental_ratio < GOALS["incremental_over_full"],
            "overhead_vs_restic_under_10pct": overhead < GOALS["overhead_vs_restic"],
            "rpo_p95_under_300s": rpo_p95 < GOALS["rpo_s_p95"],
            "pitr_restore_correct": pitr_ok,
        }
        verdict = {True: "PASS", False: "FAIL"}
        print("goals, as measured in this run:")
        print(
            f"  restore 500 GB in < 1 h: {restore_hours:.2f} h at {restore_rate / MB:.0f} MB/s "
            "(files and dump files on disk, no pg_restore) -> "
            f"{verdict[goals['restore_500gb_under_1h']]}"
        )
        print(
            f"  incremental < 10 % of full (hook phases): {incremental['hook_s']:.1f} / "
            f"{full_s:.1f} s = {incremental_ratio * 100:.1f} % -> "
            f"{verdict[goals['incremental_under_10pct']]} "
            f"(whole runs: {incremental['seconds'] / full_total_s * 100:.1f} %; "
            f"bare restic: {restic_incremental['seconds'] / restic_s * 100:.1f} %)"
        )
        print(
            f"  overhead vs bare restic < 10 %: {full_s:.1f} / {restic_s:.1f} s = "
            f"{(overhead - 1) * 100:+.1f} % -> "
            f"{verdict[goals['overhead_vs_restic_under_10pct']]} "
            f"(with check/prune: {(full_total_s / restic_s - 1) * 100:+.1f} %; "
            f"median of the rounds' own ratios: {(paired - 1) * 100:+.1f} %)"
        )
        print(
            f"  RPO p95 < {GOALS['rpo_s_p95']:.0f} s: {rpo_p95:.1f} s (max {rpo_max:.1f} s; "
            f"ship_interval_s {SHIP_INTERVAL_S:.0f}) -> {verdict[goals['rpo_p95_under_300s']]}"
        )
        print(
            f"  PITR of the {db_size / MB:.0f} MB database: {pitr_result['seconds']:.1f} s "
            f"({mbs(pitr_result['bytes'], pitr_result['seconds']):.1f} MB/s of data directory), "
            f"the last commit before the moment there and the one after it not -> "
            f"{verdict[goals['pitr_restore_correct']]}"
        )
        print()
        print(f"{'figure':24} {'goal':>8} {'today':>8} {'measured':>9}  verdict")
        for name, goal, before, value, met in (
            (
                "incremental_over_full",
                f"< {GOALS['incremental_over_full']:.2f}",
                "0.38",
                f"{incremental_ratio:.3f}",
                goals["incremental_under_10pct"],
            ),
            (
                "overhead_vs_restic",
                f"< {GOALS['overhead_vs_restic']:.2f}",
                "1.15",
                f"{overhead:.3f}",
                goals["overhead_vs_restic_under_10pct"],
            ),
            (
                "rpo_s (p95)",
                f"< {GOALS['rpo_s_p95']:.0f}",
                "-",
                f"{rpo_p95:.1f}",
                goals["rpo_p95_under_300s"],
            ),
            (
                "pitr_restore_s",
                "correct",
                "-",
                f"{pitr_result['seconds']:.1f}",
                goals["pitr_restore_correct"],
            ),
        ):
            print(f"{name:24} {goal:>8} {before:>8} {value:>9}  {'met' if met else 'MISSED'}")
        if drill_report is not None:
            print(
                f"  drill: RTO of {drill_report.data_bytes / MB:.0f} MB "
                f"{drill_report.rto_seconds:.0f} s, "
                f"{'ok' if drill_report.ok else 'FAILED: ' + '; '.join(drill_report.problems)}"
            )

        figures.update(
            dataset_bytes=dataset,
            docs_bytes=docs_bytes,
            docs_files=docs_files,
            db_size_bytes=db_size,
            dump_bytes=dump_bytes,
            backup_s=round(full_s, 2),
            backup_mb_s=round(mbs(ours_bytes, full_s), 1),
            backup_with_maintenance_s=round(full_total_s, 2),
            backup_with_maintenance_mb_s=round(mbs(ours_bytes, full_total_s), 1),
            backup_s_runs=[round(o["hook_s"], 2) for o in ours_runs],
            restic_backup_s_runs=[round(r["seconds"], 2) for r in restic_runs],
            tar_zstd_backup_s_runs=[round(t["seconds"], 2) for t in tar_runs],
            restore_s_runs=[round(r["seconds"], 2) for r in ours_restores],
            restic_restore_s_runs=[round(r["seconds"], 2) for r in restic_restores],
            maintenance_s=round(med([o["maintenance_s"] for o in ours_runs]), 2),
            backup_documents_s=round(docs_ours, 2),
            backup_postgres_s=round(pg_ours, 2),
            restic_processes_backup=len(last_full["hook_calls"]),
            restic_processes_maintenance=len(last_full["maintenance_calls"]),
            restic_process_open_s=round(fixed_s, 3),
            pg_dump_alone_s=round(dump_s, 2),
            table_checksums_alone_s=round(checksum_s, 2),
            postgres_hook_s=round(med(with_sums), 2),
            postgres_hook_without_checksums_s=round(med(without_sums), 2),
            incremental_s=round(incremental["hook_s"], 2),
            incremental_with_maintenance_s=round(incremental["seconds"], 2),
            incremental_over_full=round(incremental_ratio, 4),
            incremental_changed_doc_bytes=changed["bytes_written"],
            incremental_rows_touched=rows_touched,
            restic_incremental_s=round(restic_incremental["seconds"], 2),
            restic_incremental_over_full=round(restic_incremental["seconds"] / restic_s, 4),
            restore_s=round(restore_s, 2),
            restore_bytes=ours_restores[-1]["bytes"],
            restore_mb_s=round(restore_rate / MB, 1),
            restore_500gb_hours=round(restore_hours, 3),
            overhead_vs_restic=round(overhead, 3),
            overhead_vs_restic_paired=round(paired, 3),
            tar_zstd_backup_s=round(tar_s, 2),
            tar_zstd_backup_mb_s=round(mbs(dataset, tar_s), 1),
            tar_zstd_restore_mb_s=round(tar_restore_rate / MB, 1),
            restic_backup_s=round(restic_s, 2),
            restic_backup_mb_s=round(mbs(restic_bytes, restic_s), 1),
            restic_backup_documents_s=round(docs_restic, 2),
            restic_backup_postgres_s=round(pg_restic, 2),
            restic_restore_mb_s=round(restic_restore_rate / MB, 1),
            stored_bytes={
                "ours": repo_ours,
                "restic": repo_restic,
                "tar_zstd": tar_runs[-1]["stored"],
            },
            caches_dropped=bench.caches_dropped,
            goals=goals,
            goal_values=GOALS,
            versions=versions,
            ship_interval_s=SHIP_INTERVAL_S,
            rpo_s_p95=round(rpo_p95, 2),
            rpo_s_max=round(rpo_max, 2),
            rpo_s_runs=[round(x, 2) for x in rpo["rpo_s"]],
            rpo_commits=RPO_COMMITS,
            rpo_ship_s_median=round(med(rpo["ship_s"]), 2),
            pitr_restore_s=round(pitr_result["seconds"], 2),
            pitr_restore_bytes=pitr_result["bytes"],
            pitr_restore_mb_s=round(mbs(pitr_result["bytes"], pitr_result["seconds"]), 1),
            pitr_restore_ok=pitr_ok,
            pitr_wal_files=recovery.wal_files,
            backup_base_bytes=last_full["base_bytes"],
            incremental_base_bytes=incremental["base_bytes"],
            incremental_base_added=incremental["base_added"],
            incremental_dump_taken=incremental["dumped"],
            incremental_documents_s=round(incremental["services_s"]["documents"], 2),
            incremental_postgres_s=round(incremental["services_s"]["postgres"], 2),
            incremental_restic_processes=len(incremental["hook_calls"]),
        )
        if drill_report is not None:
            figures.update(
                drill_rto_s=round(drill_report.rto_seconds, 1),
                drill_ok=drill_report.ok,
                drill_restore_s=round(drill_report.restore_seconds, 2),
                drill_verify_s=round(drill_report.verify_seconds, 2),
            )
    finally:
        if bench is not None:
            bench.stop_archivers()
        if pg is not None:
            pg.remove()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        print(
            f"total wall time {time.perf_counter() - began:.0f} s; removed the postgres container"
            f"{'' if args.keep else ' and ' + str(work)}"
        )
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
