"""Database logins: MongoDB with access control and its two users, Rocket.Chat's URL built from a
file inside its own process, the backup hook's password in a private config file, PostgreSQL's
application passwords read by psql itself. No password on a command line, in the environment or
in the declared configuration.

The generated scripts run here with the real `sh` (and `node`, which the Rocket.Chat image also
has), each command they start replaced by a shim that records its argv; MongoDB itself is not
installed here (Debian has none), so its JavaScript runs under node against a recording `db`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

from components.catalog import mongodb, postgres, rocketchat
from components.model.plan import MongodbSource
from napdms_ops.backup.hooks import HookContext
from napdms_ops.backup.hooks import mongodb as mongodb_hook
from napdms_ops.backup.manifest import ServiceRecord
from napdms_ops.backup.restic import BackupSummary
from tests.program import labels_of, mock_password

TRICKY = "p@ss:w/rd?#[]%!'()* é$`\\\"x"
"""A password with every character a URL, a shell or YAML could trip over."""

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def _service(program, name: str):
    return next(c for c in program.services() if labels_of(c)["napdms.service"] == name)


def _init_uploads(program, name: str) -> dict[str, dict]:
    init = next(
        c
        for c in program.containers()
        if labels_of(c).get("napdms.role") == "init" and labels_of(c)["napdms.service"] == name
    )
    return {u["file"]: u for u in init.plain("uploads")}


def _passwords(program) -> list[str]:
    return [
        mock_password(p.name) for p in program.of_type("random:index/randomPassword:RandomPassword")
    ]


def _shim(bin_dir: Path, name: str, log: Path, run_real: bool = True) -> None:
    """`name` on PATH in `bin_dir`: appends its argv (one JSON list per line) to `log`, then runs
    the real one (or, with run_real False, appends its stdin to `log` instead)."""
    then = f'exec {shutil.which(name)} "$@"' if run_real else f"cat >> {log}"
    script = bin_dir / name
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> {log}
            {then}
            """
        )
    )
    script.chmod(0o755)


# --- MongoDB ------------------------------------------------------------------------------------


def test_mongod_runs_with_access_control_and_the_replica_sets_key_file(program):
    server = _service(program, "mongodb")
    command = server.plain("command")
    assert "--auth" in command, f"{server.name} runs without --auth: {command}"
    key_file = command[command.index("--keyFile") + 1]
    assert key_file == "/run/secrets/mongodb-keyfile", f"{server.name} key file {key_file}"
    upload = _init_uploads(program, "mongodb")[key_file]
    assert (upload["permissions"], upload["owner"], upload["group"]) == ("0400", "999", "999"), (
        f"{key_file} must be 0400 and owned by mongod's uid"
    )
    key = upload["content"]
    # mongod: 6 to 1024 characters of the base64 set.
    assert 6 <= len(key) <= 1024 and key.isalnum(), f"{key_file} is no valid mongod key"


def test_mongodb_root_password_reaches_the_entrypoint_as_a_file(program):
    env = dict(pair.split("=", 1) for pair in _service(program, "mongodb").plain("envs"))
    assert env["MONGO_INITDB_ROOT_USERNAME"] == "root"
    path = env["MONGO_INITDB_ROOT_PASSWORD_FILE"]
    assert path == "/run/secrets/mongodb-root-password"
    assert "MONGO_INITDB_ROOT_PASSWORD" not in env
    assert _init_uploads(program, "mongodb")[path]["permissions"] == "0400"


def test_rocketchat_and_the_backup_agent_read_the_same_generated_passwords_as_mongodb(program):
    server = _init_uploads(program, "mongodb")
    chat = _init_uploads(program, "rocketchat")
    agent = _init_uploads(program, "backup-agent")
    user_password = "/run/secrets/rocketchat-mongodb-password"
    root_password = "/run/secrets/mongodb-root-password"
    assert chat[user_password]["content"] == server[user_password]["content"]
    assert agent[root_password]["content"] == server[root_password]["content"]
    generated = set(_passwords(program))
    assert {server[user_password]["content"], server[root_password]["content"]} <= generated
    assert server[user_password]["content"] != server[root_password]["content"]
    assert "/run/secrets/mongodb-keyfile" not in chat | agent, "only mongod holds the key file"


def test_no_command_entrypoint_health_check_or_env_holds_a_password(program):
    values = _passwords(program)
    for container in program.containers():
        argv = {
            "command": container.plain("command") or [],
            "entrypoints": container.plain("entrypoints") or [],
            "healthcheck": (container.plain("healthcheck") or {}).get("tests", []),
            "envs": container.plain("envs") or [],
        }
        for field, words in argv.items():
            leaked = [v for v in values if any(v in word for word in words)]
            assert not leaked, f"{container.name}: a generated secret in its {field}"
    for name in ("rocketchat", "mongodb"):
        keys = {pair.split("=", 1)[0] for pair in _service(program, name).plain("envs")}
        assert not keys & {"MONGO_URL", "MONGO_OPLOG_URL"}, f"{name} has a database URL in env"


def _run_js(code: str, secrets: dict[str, str], tmp_path: Path, preamble: str) -> list:
    """Run mongosh JavaScript under node: `preamble` defines the recording `db`/`rs`; secret file
    paths point into tmp_path. Returns what the stubs recorded, or the error thrown."""
    for name, value in secrets.items():
        (tmp_path / name).write_text(value)
        code = code.replace(f"/run/secrets/{name}", str(tmp_path / name))
    program = tmp_path / "script.js"
    program.write_text(
        preamble
        + "\nconst calls = [];\ntry {\n"
        + code
        + "\n} catch (e) { calls.push(['threw', e.message]) }\n"
        + "console.log(JSON.stringify(calls));\n"
    )
    done = subprocess.run(["node", str(program)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


_HEALTH_STUBS = """
var STATE = %s;
const rs = {
  status() { calls.push(['status']); if (!STATE.initiated) { throw new Error('no config') } },
  initiate(config) { calls.push(['initiate', config]); STATE.initiated = true },
};
const db = {
  getSiblingDB(name) {
    return { auth(user, pwd) { calls.push(['auth', name, user, pwd]) } };
  },
  hello() { return { isWritablePrimary: STATE.primary } },
};
"""


@needs_node
@pytest.mark.parametrize(
    "state, initiated, healthy",
    [
        ({"initiated": False, "primary": False}, True, False),
        ({"initiated": True, "primary": False}, False, False),
        ({"initiated": True, "primary": True}, False, True),
    ],
    ids=["first-start", "electing", "primary"],
)
def test_mongodb_health_check_logs_in_from_the_file_then_initiates_once(
    state, initiated, healthy, tmp_path
):
    test = mongodb.SPEC.health.test
    assert test[:4] == ["CMD", "mongosh", "--quiet", "--eval"], f"health check {test}"
    calls = _run_js(
        test[4],
        {"mongodb-root-password": TRICKY + "\n"},
        tmp_path,
        _HEALTH_STUBS % json.dumps(state),
    )
    assert calls[0] == ["auth", "admin", "root", TRICKY], f"health check logs in as {calls[0]}"
    initiates = [c for c in calls if c[0] == "initiate"]
    if initiated:
        assert initiates == [
            ["initiate", {"_id": "rs0", "members": [{"_id": 0, "host": "mongodb:27017"}]}]
        ]
    else:
        assert initiates == []
    assert (calls[-1][0] != "threw") == healthy, f"health check result {calls[-1]}"


@needs_node
def test_mongodb_first_start_creates_rocketchats_least_privilege_user_from_its_file(tmp_path):
    [(name, script)] = mongodb.files(None).items()
    assert name.endswith(".js"), "the image's entrypoint runs *.js in initdb.d with mongosh"
    calls = _run_js(
        script,
        {"rocketchat-mongodb-password": TRICKY},
        tmp_path,
        "const db = { getSiblingDB(name) {"
        " return { createUser(user) { calls.push(['createUser', name, user]) } } } };",
    )
    assert calls == [
        [
            "createUser",
            "rocketchat",
            {
                "user": "rocketchat",
                "pwd": TRICKY,
                "roles": [
                    {"role": "readWrite", "db": "rocketchat"},
                    {"role": "read", "db": "local"},
                ],
            },
        ]
    ]


def test_mongodb_sits_on_a_segment_apart_from_the_shared_data_network():
    assert mongodb.SPEC.networks == ["chat"]
    assert "chat" in rocketchat.SPEC.networks and "data" not in rocketchat.SPEC.networks


# --- Rocket.Chat --------------------------------------------------------------------------------


def test_rocketchat_starts_through_its_wrapper_with_the_images_command(program):
    for container in program.services():
        if labels_of(container)["napdms.service"] != "rocketchat":
            continue
        assert container.plain("entrypoints") == ["/bin/sh", rocketchat.ENTRY]
        assert container.plain("command") == ["node", "main.js"]
    upload = _init_uploads(program, "rocketchat")[rocketchat.ENTRY]
    assert (upload["permissions"], upload["owner"]) == ("0500", "65533")
    assert upload["content"] == rocketchat.files(None)["entry.sh"]


@needs_node
# dash, and busybox's ash as in the Rocket.Chat image (Alpine).
@pytest.mark.parametrize(
    "shell",
    [
        ["sh"],
        pytest.param(
            ["busybox", "sh"],
            marks=pytest.mark.skipif(not shutil.which("busybox"), reason="no busybox"),
        ),
    ],
    ids=["sh", "busybox-sh"],
)
def test_rocketchat_wrapper_builds_the_urls_from_the_password_file_off_every_command_line(
    shell, tmp_path
):
    secret = tmp_path / "rocketchat-mongodb-password"
    secret.write_text(TRICKY)
    script = rocketchat.files(None)["entry.sh"].replace(
        "/run/secrets/rocketchat-mongodb-password", str(secret)
    )
    (tmp_path / "entry.sh").write_text(script)
    bin_dir, log = tmp_path / "bin", tmp_path / "argv.log"
    bin_dir.mkdir()
    _shim(bin_dir, "node", log)
    done = subprocess.run(
        [
            *shell,
            str(tmp_path / "entry.sh"),
            "sh",
            "-c",
            'printf "%s\\n%s" "$MONGO_URL" "$MONGO_OPLOG_URL"',
        ],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
        check=True,
    )
    main_url, oplog_url = done.stdout.split("\n")
    for url, database, query in (
        (main_url, "rocketchat", {"replicaSet": ["rs0"]}),
        (oplog_url, "local", {"replicaSet": ["rs0"], "authSource": ["rocketchat"]}),
    ):
        parts = urlsplit(url)
        assert parts.scheme == "mongodb" and parts.hostname == "mongodb" and parts.port == 27017
        assert parts.username == "rocketchat"
        # Nothing in the password that the driver's parser would split on, and it decodes back.
        encoded = parts.password
        assert not set(encoded) & set(":/?#[]@'()!* $`\"\\"), f"not percent-encoded: {encoded}"
        assert unquote(encoded) == TRICKY
        assert parts.path == f"/{database}" and parse_qs(parts.query) == query
    invocations = [json.loads(line) for line in log.read_text().splitlines()]
    assert invocations and all(TRICKY not in " ".join(argv) for argv in invocations), (
        "the password is on a command line"
    )


# --- the backup hook ----------------------------------------------------------------------------


class _Restic:
    """Records what the hook asks restic to back up, and the config file as the tool sees it."""

    def __init__(self):
        self.command: list[str] = []
        self.env: dict[str, str] = {}
        self.config_text = ""
        self.config_mode = 0

    def backup_command(self, command, env, path, host_tag, tags):
        self.command, self.env = command, env
        config = next(a.split("=", 1)[1] for a in command if a.startswith("--config="))
        self.config_text = Path(config).read_text()
        self.config_mode = os.stat(config).st_mode & 0o777
        return BackupSummary(
            snapshot_id="abc", files=1, bytes_processed=10, bytes_added=10, seconds=0.1
        )


def _source(tmp_path) -> MongodbSource:
    password = tmp_path / "mongodb-root-password"
    password.write_text(TRICKY)
    return MongodbSource(
        service="mongodb", host="mongodb", user="root", password_file=str(password)
    )


def test_backup_hook_logs_in_with_a_config_file_never_argv_or_env(tmp_path):
    restic = _Restic()
    mongodb_hook.backup(_source(tmp_path), HookContext(restic=restic, host_tag="h", tags=[]))
    command = restic.command
    assert command[:5] == ["mongodump", "--host", "mongodb", "--port", "27017"]
    assert command[command.index("--username") + 1] == "root"
    assert command[command.index("--authenticationDatabase") + 1] == "admin"
    assert "--oplog" in command and "--archive" in command
    assert not any(TRICKY in word for word in command), "the password is on mongodump's argv"
    assert not any(TRICKY in value for value in restic.env.values()), "the password is in env"
    assert yaml.safe_load(restic.config_text) == {"password": TRICKY}
    assert restic.config_mode == 0o600, f"config file mode {oct(restic.config_mode)}"
    config = next(a.split("=", 1)[1] for a in command if a.startswith("--config="))
    assert not Path(config).exists(), "the config file outlives the dump"


def test_restore_load_logs_in_the_same_way(tmp_path, monkeypatch):
    seen = {}

    def run(argv, **kwargs):
        config = next(a.split("=", 1)[1] for a in argv if a.startswith("--config="))
        seen.update(argv=argv, env=kwargs["env"], config=Path(config).read_text())
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    monkeypatch.setattr(mongodb_hook.subprocess, "run", run)
    record = ServiceRecord(service="mongodb", hook="mongodb", status="ok", parts=[], seconds=0)
    mongodb_hook.load(_source(tmp_path), record, str(tmp_path))
    assert seen["argv"][0] == "mongorestore" and "--username" in seen["argv"]
    assert not any(TRICKY in word for word in seen["argv"])
    assert not any(TRICKY in value for value in seen["env"].values())
    assert yaml.safe_load(seen["config"]) == {"password": TRICKY}


# --- PostgreSQL ---------------------------------------------------------------------------------


def test_postgres_first_start_script_passes_no_password_on_argv(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    passwords = {"napdms": TRICKY, "gitea": "second-password"}
    for app, value in passwords.items():
        (secrets / f"{app}-db-password").write_text(value)
    (secrets / "postgres-password").write_text("superuser-password")
    script = postgres.files(None)["10-app-roles.sh"].replace("/run/secrets", str(secrets))
    bin_dir, log = tmp_path / "bin", tmp_path / "psql.log"
    bin_dir.mkdir()
    # A recording psql (the real one needs a server: tests/live runs the script for real).
    _shim(bin_dir, "psql", log, run_real=False)
    subprocess.run(
        ["sh", "-c", script],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "POSTGRES_USER": "postgres"},
        check=True,
    )
    logged = log.read_text()
    for value in (*passwords.values(), "superuser-password"):
        assert value not in logged, "a password reached psql's argv or its script"
    # psql reads each file itself, by path, in its script on stdin.
    for app in passwords:
        assert f"file={secrets}/{app}-db-password" in logged
    assert logged.count("\\set password `cat :'file'`") == len(passwords)
    assert logged.count("CREATE ROLE :\"app\" LOGIN PASSWORD :'password';") == len(passwords)
