"""The dev stack's PostgreSQL, Redis, Prometheus and Caddy proxy, replayed as declared onto a
real engine: they reach healthy while hardened, and the engine confirms every hardening setting,
including the PIDs limits the declared `docker update --pids-limit` commands set."""

import http.client
import json
import time

import docker
import pytest

from components.catalog import CATALOG, log_shipper
from components.hardened_service import LOG_OPTS
from components.settings import load_stack
from policies.rules import from_pulumi
from tests.live.engine import DATA_ROOT, ensure_engine
from tests.live.replay import replay
from tests.program import labels_of, mock_password, run_program, stack_config

SERVICES = ("postgres", "redis", "prometheus", "proxy")
DEV = load_stack("dev", stack_config("dev"), set()).services
_CAP_BITS = {"NET_BIND_SERVICE": 10, "CHOWN": 0, "DAC_READ_SEARCH": 2, "FOWNER": 3}


@pytest.fixture(scope="module")
def replayed():
    """(the dev program, its replay onto the engine)."""
    program = run_program("dev")
    done = replay(program, SERVICES, ensure_engine())
    yield program, done
    done.remove()


@pytest.fixture(scope="module")
def live(replayed):
    return {
        name.removeprefix("local-").removesuffix("-1"): c
        for name, c in replayed[1].containers.items()
    }


def _exec(container, *command: str) -> tuple[int, str]:
    code, output = container.exec_run(list(command), demux=False)
    return code, output.decode(errors="replace").strip()


def _status_field(container, field: str) -> str:
    _, status = _exec(container, "cat", "/proc/1/status")
    return next(
        line.split(":", 1)[1].split()
        for line in status.splitlines()
        if line.startswith(f"{field}:")
    )


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_healthy(live, service):
    live[service].reload()
    assert live[service].attrs["State"]["Health"]["Status"] == "healthy", (
        f"{service} is not healthy"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_main_process_is_not_root(live, service):
    real, effective, _, _ = _status_field(live[service], "Uid")
    assert (real, effective) == (str(CATALOG[service].uid),) * 2, (
        f"{service} runs as uid {effective}"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_main_process_has_no_capabilities(live, service):
    for field in ("CapEff", "CapPrm"):
        assert _status_field(live[service], field) == ["0000000000000000"], f"{service} {field}"


@pytest.mark.parametrize("service", SERVICES)
def test_bounding_set_is_exactly_the_declared_add_list(live, service):
    expected = sum(1 << _CAP_BITS[cap.name] for cap in CATALOG[service].cap_add)
    assert int(_status_field(live[service], "CapBnd")[0], 16) == expected, f"{service} bounding set"


@pytest.mark.parametrize("service", SERVICES)
def test_root_filesystem_is_read_only(live, service):
    code, output = _exec(live[service], "sh", "-c", "echo x > /probe")
    assert code != 0 and "Read-only file system" in output, f"{service} could write to /"


@pytest.mark.parametrize("service", SERVICES)
def test_no_new_privileges_flag_is_set(live, service):
    assert _status_field(live[service], "NoNewPrivs") == ["1"], f"{service} may gain privileges"


@pytest.mark.parametrize("service", SERVICES)
def test_engine_enforces_the_declared_limits(live, service):
    host_config = live[service].attrs["HostConfig"]
    assert host_config["Memory"] == DEV[service].memory * 2**20, f"{service} memory"
    assert host_config["MemorySwap"] == host_config["Memory"], f"{service} may swap"
    assert host_config["NanoCpus"] > 0, f"{service} has no CPU limit"
    assert host_config["PidsLimit"] == DEV[service].pids, f"{service} PIDs limit"
    assert not host_config["Ulimits"], f"{service} sets ulimits"
    assert host_config["LogConfig"] == {"Type": "json-file", "Config": LOG_OPTS}


def test_postgres_secret_file_is_0400_owned_by_postgres_on_a_read_only_mount(live):
    _, stat = _exec(live["postgres"], "stat", "-c", "%a %u %g", "/run/secrets/postgres-password")
    assert stat == "400 999 999"
    code, _ = _exec(live["postgres"], "sh", "-c", "echo x > /run/secrets/postgres-password")
    assert code != 0, "the service can rewrite its own secret"


def test_postgres_created_a_role_per_application_from_the_secret_files(live):
    for app in ("napdms", "gitea", "n8n"):
        code, output = _exec(
            live["postgres"],
            "sh",
            "-c",
            f'PGPASSWORD="$(cat /run/secrets/{app}-db-password)" '
            # Through the network alias, as the applications connect (loopback is trusted upstream).
            f"psql -h postgres -U {app} -d {app} -Atc 'select current_user'",
        )
        assert (code, output) == (0, app), f"{app} cannot log in: {output}"


def test_postgres_rejects_a_wrong_password(live):
    code, _ = _exec(
        live["postgres"],
        "sh",
        "-c",
        "PGPASSWORD=wrong psql -h postgres -U napdms -d napdms -c 'select 1'",
    )
    assert code != 0


def test_redis_requires_the_password_from_its_secret_file(live):
    assert _exec(live["redis"], "redis-cli", "-h", "127.0.0.1", "ping")[1].startswith("NOAUTH")
    code, output = _exec(
        live["redis"],
        "sh",
        "-c",
        'REDISCLI_AUTH="$(cat /run/secrets/redis-password)" redis-cli -h 127.0.0.1 ping',
    )
    assert (code, output) == (0, "PONG")


def test_databases_sit_only_on_the_internal_data_network(live):
    client = ensure_engine()
    for service in ("postgres", "redis"):
        networks = live[service].attrs["NetworkSettings"]["Networks"]
        assert list(networks) == ["napdms-dev-data"], f"{service} joins {list(networks)}"
    assert client.networks.get("napdms-dev-data").attrs["Internal"] is True


def test_init_container_handed_the_proxy_volumes_to_its_user(live):
    for path in ("/data", "/config"):
        assert _exec(live["proxy"], "stat", "-c", "%u", path)[1] == "1000", (
            f"{path} is not owned by uid 1000"
        )


def test_proxy_reads_its_generated_caddyfile_from_a_read_only_mount(live):
    assert _exec(live["proxy"], "stat", "-c", "%a %u", "/etc/caddy/Caddyfile")[1] == "400 1000"
    _, config = _exec(
        live["proxy"], "wget", "-qO-", "http://127.0.0.1:2019/config/apps/http/servers"
    )
    assert "dms.nap-dms.localhost" in config, "caddy did not load the generated sites"


def test_proxy_answers_on_the_published_port_and_redirects_to_https():
    connection = http.client.HTTPConnection("127.0.0.1", 80, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": "dms.nap-dms.localhost"})
        response = connection.getresponse()
        assert response.status == 308
        assert response.getheader("Location") == "https://dms.nap-dms.localhost/"
    finally:
        connection.close()


# PIDs limits (CIS 5.29)


def test_every_replayed_container_has_the_pids_limit_its_command_declares(replayed):
    program, done = replayed
    commands = {c.name: c for c in program.of_type(from_pulumi.COMMAND)}
    assert done.containers
    for name, container in done.containers.items():
        command = commands[f"{name}-pids"]
        _, target, limit = from_pulumi.read_pids_command(command.inputs)
        assert done.commands[command.name] == command.plain("create"), f"{name}: not run"
        container.reload()
        assert target == container.name
        assert container.attrs["HostConfig"]["PidsLimit"] == limit, f"{name}: PIDs limit"
        labels = labels_of(next(c for c in program.containers() if c.name == name))
        assert str(limit) == labels["napdms.pids-limit"], f"{name}: declared {limit}"


def test_init_containers_ran_once_limited_and_succeeded(replayed):
    program, done = replayed
    inits = {n: c for n, c in done.containers.items() if n.endswith("-init")}
    assert inits
    order = list(done.commands)
    for name, container in inits.items():
        # Limited while created, before its one run.
        assert order.index(f"{name}-pids") < order.index(f"{name}-run")
        container.reload()
        state = container.attrs["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), f"{name}: {state}"
        assert container.attrs["HostConfig"]["PidsLimit"] == 16


FLOODED = "redis"
HOLD_S = 5
"""How long each forked `sleep` runs: the loop stops by itself, and so do they."""


def _answers(container) -> bool:
    """Whether the engine can still start a process in the container (a health probe needs one)."""
    try:
        return container.exec_run(["true"])[0] == 0
    except docker.errors.APIError:
        return False


def test_a_fork_loop_stops_at_its_limit_while_the_others_keep_answering(live):
    flooded, limit = live[FLOODED], DEV[FLOODED].pids
    attempts = limit + 64
    # `read` is a builtin: it reads how many tasks the cgroup holds without forking.
    script = (
        "read before < /sys/fs/cgroup/pids/pids.current; echo before $before; "
        f"for i in $(seq 1 {attempts}); do sleep {HOLD_S} >/dev/null 2>&1 & echo forked $i; done"
    )
    started = time.monotonic()
    code, output = _exec(flooded, "sh", "-c", script)
    forked = [int(line.split()[1]) for line in output.splitlines() if line.startswith("forked ")]
    before = int(output.splitlines()[0].split()[1])
    print(
        f"{FLOODED}: PIDs limit {limit}, {before} tasks before, {len(forked)} of {attempts} "
        f"forks succeeded in {time.monotonic() - started:.2f} s; then: {output.splitlines()[-1]}"
    )
    assert code != 0 and "Cannot fork" in output, "the loop was never refused a fork"
    # Each sleep is one task: the loop filled the cgroup to its limit and no further.
    assert limit - before - 2 <= len(forked) <= limit - before
    # The loop's shell has exited: one task is free, and one process is all it takes to fill it.
    assert _exec(flooded, "cat", "/sys/fs/cgroup/pids/pids.current") == (0, str(limit))
    code, output = _exec(flooded, "sh", "-c", "sleep 0 & wait")
    assert code != 0 and "Cannot fork" in output, f"{FLOODED} forks beyond its limit: {output}"
    for service in SERVICES:
        if service == FLOODED:
            continue
        other = live[service]
        assert _answers(other), f"{service} stopped answering"
        assert _exec(other, *_probe(service))[0] == 0, f"{service}'s health probe fails"
        other.reload()
        assert other.attrs["State"]["Health"]["Status"] == "healthy", f"{service} unhealthy"
    # The sleeps end on their own, but redis-server, its PID 1, reaps no orphans: they stay
    # zombies holding their PIDs until the container restarts. The limit is in its HostConfig, so
    # it holds from the first process of the restart on.
    flooded.restart(timeout=10)
    flooded.reload()
    assert flooded.attrs["HostConfig"]["PidsLimit"] == limit
    deadline = time.monotonic() + 30
    while _exec(flooded, *_probe(FLOODED))[0] != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _exec(flooded, *_probe(FLOODED))[0] == 0, f"{FLOODED} did not come back"
    code, current = _exec(flooded, "cat", "/sys/fs/cgroup/pids/pids.current")
    assert code == 0 and int(current) <= before + 1, f"{FLOODED} holds {current} tasks"


def _probe(service: str) -> list[str]:
    """The service's declared health check, as a command to exec."""
    kind, *test = CATALOG[service].health.test
    return ["sh", "-c", test[0]] if kind == "CMD-SHELL" else test


# Central logs (issue 13 §5)


def _json_log(container) -> tuple[str, str]:
    """(the json-file log's path on the engine's host, its content)."""
    container.reload()
    path = container.attrs["LogPath"]
    with open(path, encoding="utf-8") as log:
        return path, log.read()


def test_engine_writes_each_log_where_the_shipper_looks_with_service_stack_host(replayed):
    program, done = replayed
    declared = {c.name: labels_of(c) for c in program.containers()}
    pattern = log_shipper.LOGS_DIR.replace(log_shipper.DEFAULT_DOCKER_ROOT, DATA_ROOT)
    checked = 0
    for name, container in done.containers.items():
        path, content = _json_log(container)
        assert path == f"{pattern}/{container.id}/{container.id}-json.log", f"{name}: {path}"
        for line in map(json.loads, content.splitlines()):
            labels = declared[name]
            assert line["attrs"] == {
                "napdms.service": labels["napdms.service"],
                "napdms.stack": "dev",
                "napdms.host": labels["napdms.host"],
                "tag": container.name,
            }, f"{name}: {line}"
            checked += 1
    assert checked, "no container wrote a log line"


def test_no_generated_secret_value_reaches_any_container_log(replayed, live):
    program, done = replayed
    values = {
        p.name: mock_password(p.name)
        for p in program.of_type("random:index/randomPassword:RandomPassword")
    }
    # The values searched for are the ones the containers really hold.
    assert _exec(live["postgres"], "cat", "/run/secrets/postgres-password")[1] in values.values()
    logged = 0
    for name, container in done.containers.items():
        streams = {"docker logs": container.logs().decode(errors="replace")}
        streams["json file"] = _json_log(container)[1]
        for where, text in streams.items():
            logged += len(text)
            leaked = [secret for secret, value in values.items() if value in text]
            assert not leaked, f"{name}: the value of {leaked} in its {where}"
    assert logged, "the containers logged nothing, so nothing was checked"
