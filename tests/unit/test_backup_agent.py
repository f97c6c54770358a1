"""The backup agent as declared: built from this repository, fed one plan.json, dumping databases
through their hooks and reading every other daily volume as files."""

import copy
import json
import re

import pulumi
import pytest
from pydantic import ValidationError

from components.catalog import CATALOG, generated_files
from components.catalog.backup_agent import DOCKERFILE, PLAN_FILE
from components.model.plan import BackupPlan
from components.model.spec import BackupHook, HealthCheck, SecretUse, ServiceSpec
from components.settings import SettingsError, load_settings, load_stack
from napdms_ops.images import stack_images
from policies.rules.names import INTERNAL_SEGMENTS
from tests.conftest import program_of
from tests.program import (
    OPERATOR_CONFIG,
    ROOT,
    STACKS,
    is_secret,
    labels_of,
    run_program,
    stack_config,
)

AGENT = "backup-agent"
HOOKS = {
    "postgres": {
        "hook": "postgresql",
        "service": "postgres",
        "host": "postgres",
        "port": 5432,
        "user": "postgres",
        "password_file": "/run/secrets/postgres-password",
        "databases": [],
        "wal": {
            "spool_dir": "/wal/postgres",
            "slot": "napdms_backup",
            "ship_interval_s": 60,
            "marker_interval_s": 86400,
            "logical_dump_days": 7,
        },
    },
    "redis": {
        "hook": "redis",
        "service": "redis",
        "host": "redis",
        "port": 6379,
        "password_file": "/run/secrets/redis-password",
    },
    "mongodb": {
        "hook": "mongodb",
        "service": "mongodb",
        "host": "mongodb",
        "port": 27017,
        "user": "root",
        "password_file": "/run/secrets/mongodb-root-password",
        "oplog": True,
    },
}
"""The dump sources every stack's plan lists."""
FILES = {
    "napdms-backend": ["/source/napdms-backend/documents"],
    "gitea": ["/source/gitea/data", "/source/gitea/config"],
    "n8n": ["/source/n8n/data"],
    "proxy": ["/source/proxy/data"],
    "alertmanager": ["/source/alertmanager/data"],
    "grafana": ["/source/grafana/data"],
}
"""The file sources every stack's plan lists: daily volumes of services without a hook."""
OFFSITE = {
    "endpoint": "https://s3.eu-central-1.amazonaws.com",
    "bucket": "napdms-offsite",
    "region": "eu-central-1",
    "object_lock_days": 14,
    "noncurrent_days": 60,
}
S3_KEYS = {"s3_access_key_id": "AKIAFIXTURE", "s3_secret_access_key": "fixture-secret-key"}


def _agent(program):
    return next(c for c in program.services() if labels_of(c)["napdms.service"] == AGENT)


def _uploads(program) -> dict[str, str]:
    """The agent's secret and config files, as its init container writes them."""
    init = next(
        c
        for c in program.containers()
        if labels_of(c).get("napdms.role") == "init" and labels_of(c)["napdms.service"] == AGENT
    )
    return {u["file"]: u["content"] for u in init.plain("uploads")}


def _plan(program) -> BackupPlan:
    return BackupPlan.model_validate_json(_uploads(program)[PLAN_FILE])


def _config(stack: str, **backup) -> dict:
    config = copy.deepcopy(stack_config(stack))
    config["backup"].update(backup)
    return config


def _offsite_program():
    config = {**_config("prod", offsite=OFFSITE), **OPERATOR_CONFIG, **S3_KEYS}
    return run_program("prod", config, secret_keys=(*OPERATOR_CONFIG, *S3_KEYS))


def test_agent_is_built_from_its_dockerfile_by_its_hosts_daemon(program):
    agent = _agent(program)
    [image] = [r for r in program.of_type("docker:index/image:Image") if r.parent == agent.parent]
    build = image.plain("build")
    assert (ROOT / DOCKERFILE).is_file(), f"{image.name}: {DOCKERFILE} is missing"
    assert (build["context"], build["dockerfile"], build["platform"]) == (
        ".",
        DOCKERFILE,
        "linux/amd64",
    ), f"{image.name} builds {build}"
    assert image.plain("skipPush") is True, f"{image.name} would push to a registry"
    assert image.plain("imageName") == f"napdms/{AGENT}:{CATALOG[AGENT].tag}", (
        f"{image.name} tags {image.plain('imageName')}"
    )
    assert image.provider == agent.provider, (
        f"{image.name} is built on another daemon than {agent.name} runs on"
    )
    assert image.urn in agent.dependencies and agent.plain("image").startswith("sha256:"), (
        f"{agent.name} does not run the built image's id"
    )


def test_agent_is_built_on_the_stacks_postgres_image(program):
    [image] = program.of_type("docker:index/image:Image")
    postgres = load_stack(program.stack, stack_config(program.stack), set()).services["postgres"]
    assert image.plain("build")["args"] == {"POSTGRES_IMAGE": postgres.image_ref}, (
        f"{image.name}: dump tools of another release"
    )


def test_dockerfile_default_base_is_the_catalogs_postgres_image():
    default = re.search(
        r"^ARG POSTGRES_IMAGE=(\S+)$", (ROOT / DOCKERFILE).read_text(), re.MULTILINE
    )
    assert default and default[1] == CATALOG["postgres"].image_ref, (
        f"{DOCKERFILE}: base {default and default[1]}"
    )


def test_agent_runs_the_orchestrator_and_its_health_command(program):
    agent = _agent(program)
    assert agent.plain("command") == ["agent", "--plan", PLAN_FILE], (
        f"{agent.name} runs {agent.plain('command')}"
    )
    assert agent.plain("healthcheck")["tests"] == [
        "CMD",
        "python3",
        "-m",
        "napdms_ops.backup",
        "health",
        "--plan",
        PLAN_FILE,
    ], f"{agent.name}: health check {agent.plain('healthcheck')['tests']}"


@pytest.mark.parametrize("stack", STACKS)
def test_plan_validates_and_lists_the_hooks_and_file_sources(stack):
    plan = _plan(program_of(stack))
    sources = {s.service: s.model_dump() for s in plan.sources}
    assert {name: sources.get(name) for name in HOOKS} == HOOKS, (
        f"{stack}-backup-agent plan.json: dump sources"
    )
    files = {name: s["paths"] for name, s in sources.items() if s["hook"] == "files"}
    assert files == FILES, f"{stack}-backup-agent plan.json: file sources"
    assert set(sources) == set(HOOKS) | set(FILES), (
        f"{stack}-backup-agent plan.json lists {sorted(sources)}"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_plan_carries_the_stacks_schedule_and_host_tag(stack):
    plan = _plan(program_of(stack))
    backup = load_settings(stack, stack_config(stack), set()).backup
    assert (plan.stack, plan.host_tag) == (stack, f"napdms-{stack}"), (
        f"{stack}-backup-agent plan.json: identity"
    )
    assert (plan.schedule.time_of_day, plan.schedule.timezone) == (
        backup.time_of_day,
        backup.timezone,
    ), f"{stack}-backup-agent plan.json: schedule {plan.schedule}"
    assert (plan.state_dir, plan.cache_dir) == ("/state", "/cache"), (
        f"{stack}-backup-agent plan.json: directories"
    )


def test_dump_sources_reach_their_service_by_its_alias_on_an_internal_network(program):
    agent_networks = {n["name"] for n in _agent(program).plain("networksAdvanced")}
    for source in _plan(program).sources:
        if source.hook == "files":
            continue
        [server] = [
            c for c in program.services() if labels_of(c)["napdms.service"] == source.service
        ]
        aliases = {
            alias
            for n in server.plain("networksAdvanced")
            if n["name"].rsplit("-", 1)[-1] in INTERNAL_SEGMENTS and n["name"] in agent_networks
            for alias in n["aliases"]
        }
        assert source.host in aliases, (
            f"{server.name}: the agent cannot reach {source.host} on a shared internal network"
        )


def test_hooked_services_volumes_are_not_mounted_into_the_agent(program):
    agent = _agent(program)
    mounted = {m["volumeName"] for m in agent.plain("volumes") if "volumeName" in m}
    for volume in program.of_type("docker:index/volume:Volume"):
        if CATALOG[labels_of(volume)["napdms.service"]].backup_hook:
            assert volume.plain("name") not in mounted, (
                f"{agent.name} mounts {volume.plain('name')}, a running database's files"
            )


def test_agent_joins_edge_data_chat_and_monitoring(program):
    agent = _agent(program)
    segments = sorted(n["name"].rsplit("-", 1)[-1] for n in agent.plain("networksAdvanced"))
    assert segments == ["chat", "data", "edge", "monitoring"], f"{agent.name} joins {segments}"


def test_agent_receives_the_password_files_its_plan_names(program):
    uploads = _uploads(program)
    named = {s.password_file for s in _plan(program).sources if getattr(s, "password_file", None)}
    named.add(_plan(program).repository.password_file)
    assert named <= set(uploads), (
        f"{program.stack}-backup-agent lacks {sorted(named - set(uploads))}"
    )


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_sftp_repository_uses_the_uploaded_key_and_known_hosts(stack):
    program = program_of(stack)
    sftp = _plan(program).repository.sftp
    uploads = _uploads(program)
    known_hosts = load_settings(stack, stack_config(stack), set()).backup.sftp_known_hosts
    assert sftp is not None, f"{stack}-backup-agent plan.json: no sftp access"
    assert uploads[sftp.known_hosts_file] == known_hosts + "\n", (
        f"{stack}-backup-agent: known_hosts differs"
    )
    assert uploads[sftp.key_file] == OPERATOR_CONFIG["backup_ssh_key"] + "\n", (
        f"{stack}-backup-agent: ssh key file"
    )


def test_ssh_key_from_encrypted_config_stays_secret(program):
    key = OPERATOR_CONFIG["backup_ssh_key"]
    for resource in program.resources:
        plain = json.dumps({k: v for k, v in resource.inputs.items() if not is_secret(v)})
        assert key not in plain, f"{resource.name} holds the backup ssh key in plain text"


def test_dev_keeps_its_local_repository_on_an_excluded_volume_of_its_own():
    program = program_of("dev")
    plan = _plan(program)
    [volume] = [
        v
        for v in program.of_type("docker:index/volume:Volume")
        if v.plain("name") == "napdms-dev-backup-agent-repository"
    ]
    mounts = {
        m["containerPath"]: m["volumeName"]
        for m in _agent(program).plain("volumes")
        if "volumeName" in m
    }
    assert (plan.repository.url, plan.repository.sftp) == ("/repository", None), (
        "local-backup-agent plan.json: repository"
    )
    assert mounts["/repository"] == volume.plain("name"), (
        "local-backup-agent does not mount its repository volume"
    )
    assert (
        labels_of(volume)["napdms.backup"] == "exclude"
        and labels_of(volume)["napdms.backup.reason"]
    ), f"{volume.name}: backup policy"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_sftp_repository_without_known_hosts_names_stack_and_key(stack):
    config = _config(stack)
    del config["backup"]["sftp_known_hosts"]
    host = config["backup"]["repository"].split("@")[1].split(":")[0]
    with pytest.raises(SettingsError) as raised:
        load_settings(stack, config, set())
    assert raised.value.lines == [
        f"{stack}: backup.sftp_known_hosts: required for the sftp repository on {host}; "
        f"add its host key line (`ssh-keyscan -t ed25519 {host}`, checked by hand) "
        "so a changed key stops the backup"
    ]


def test_known_hosts_for_another_host_is_rejected():
    config = _config(
        "prod", sftp_known_hosts="asustor.example.net ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixture"
    )
    with pytest.raises(SettingsError) as raised:
        load_settings("prod", config, set())
    assert raised.value.lines == [
        "prod: backup.sftp_known_hosts: no line names asustor.nap-dms.example.org, "
        "the host of backup.repository; "
        "add the line `ssh-keyscan -t ed25519 asustor.nap-dms.example.org` prints"
    ]


def test_missing_ssh_key_stops_the_program_naming_stack_key_and_fix():
    others = {key: value for key, value in OPERATOR_CONFIG.items() if key != "backup_ssh_key"}
    with pytest.raises(pulumi.RunError) as raised:
        run_program("prod", {**stack_config("prod"), **others}, secret_keys=tuple(others))
    assert str(raised.value) == (
        "prod: backup_ssh_key: not set, but this stack needs the private key the backup agent "
        "logs in to the ASUSTOR's sftp with; "
        "set it with `pulumi config set --secret backup_ssh_key --stack prod` "
        "(the value as argument, or piped in: `< file`)"
    )


def test_offsite_settings_render_into_the_plan():
    stack = load_stack("prod", _config("prod", offsite=OFFSITE), set())
    plan = BackupPlan.model_validate_json(generated_files(AGENT, stack.context)["plan.json"])
    offsite = plan.offsite
    assert offsite is not None, "prod-backup-agent plan.json: no offsite"
    assert offsite.model_dump(exclude={"repository"}) == OFFSITE, (
        f"prod-backup-agent plan.json: offsite {offsite}"
    )
    assert offsite.repository.model_dump() == {
        "url": "s3:https://s3.eu-central-1.amazonaws.com/napdms-offsite/napdms-prod",
        "password_file": "/run/secrets/restic-password",
        "previous_password_file": "/run/secrets/restic-password-previous",
        "sftp": None,
        "s3_access_key_file": "/run/secrets/backup-s3-access-key",
        "s3_secret_key_file": "/run/secrets/backup-s3-secret-key",
    }, "prod-backup-agent plan.json: offsite repository"


def test_offsite_keys_come_from_encrypted_config_as_secret_files():
    program = _offsite_program()
    uploads = _uploads(program)
    init = next(c for c in program.containers() if c.name == "qnap-backup-agent-init")
    assert uploads["/run/secrets/backup-s3-access-key"] == S3_KEYS["s3_access_key_id"], (
        "qnap-backup-agent-init: access key"
    )
    assert uploads["/run/secrets/backup-s3-secret-key"] == S3_KEYS["s3_secret_access_key"], (
        "qnap-backup-agent-init: secret key"
    )
    assert is_secret(init.inputs["uploads"]), (
        "qnap-backup-agent-init stores the S3 keys in plain text"
    )


def test_offsite_without_its_keys_stops_the_program_naming_each_key():
    config = {**_config("prod", offsite=OFFSITE), **OPERATOR_CONFIG}
    with pytest.raises(pulumi.RunError) as raised:
        run_program("prod", config, secret_keys=tuple(OPERATOR_CONFIG))
    assert [line.split(";")[0] for line in str(raised.value).splitlines()] == [
        (
            "prod: s3_access_key_id: not set, "
            "but this stack needs the offsite S3 bucket's access key id"
        ),
        (
            "prod: s3_secret_access_key: not set, "
            "but this stack needs the offsite S3 bucket's secret key"
        ),
    ]


def test_hook_naming_a_secret_the_service_does_not_read_is_rejected():
    with pytest.raises(ValidationError) as raised:
        ServiceSpec(
            name="db",
            description="a database whose hook names a secret it does not read",
            image="docker.io/library/postgres",
            tag="17.6-bookworm",
            user="999:999",
            secrets=[SecretUse(secret="db-password")],
            networks=["data"],
            health=HealthCheck(test=["CMD", "pg_isready"]),
            memory="512m",
            cpus=1,
            backup_hook=BackupHook(
                kind="postgresql", port=5432, user="postgres", password_secret="other-password"
            ),
        )
    assert 'backup_hook.password_secret "other-password" is not a secret db reads' in str(
        raised.value
    )
    assert "name one of: db-password" in str(raised.value)


def test_built_image_may_not_be_pointed_at_a_registry():
    config = copy.deepcopy(stack_config("prod"))
    config["services"][AGENT] = {"image": "docker.io/example/agent"}
    with pytest.raises(SettingsError) as raised:
        load_settings("prod", config, set())
    assert raised.value.lines == [
        f"prod: services.{AGENT}.image: {AGENT} is built from {DOCKERFILE} at `pulumi up`, "
        "not pulled; remove the key"
    ]


def test_operator_secret_cannot_be_rotated_by_counter():
    config = copy.deepcopy(stack_config("prod"))
    config["secrets"] = {"rotation": {"backup-ssh-key": 1}}
    with pytest.raises(SettingsError) as raised:
        load_settings("prod", config, set())
    assert raised.value.lines == [
        "prod: secrets.rotation.backup-ssh-key: the operator sets this key, it is not generated; "
        "rotate it with `pulumi config set --secret backup_ssh_key` and run `up`"
    ]


def test_daily_volumes_away_from_the_agents_host_are_rejected():
    config = copy.deepcopy(stack_config("prod"))
    config["services"]["gitea"] = {**config["services"]["gitea"], "host": "asustor"}
    with pytest.raises(SettingsError) as raised:
        load_settings("prod", config, set())
    assert raised.value.lines == [
        "prod: services.gitea.host: gitea keeps daily-backed-up volumes on asustor, "
        "but the backup agent runs on qnap and reaches only its own host; "
        "keep gitea on qnap or exclude its volumes with a reason"
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_images_command_lists_the_agents_base_but_not_the_built_image(stack):
    refs = stack_images(stack)
    assert not [ref for ref in refs if ref.startswith(f"napdms/{AGENT}")], (
        f"{stack}: a built image is listed as pullable"
    )
    assert CATALOG["postgres"].image_ref in refs, f"{stack}: the agent's base image is not scanned"
