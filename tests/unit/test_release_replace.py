"""Deploys that replace a service's container: `held` (behind the proxy: gitea) and `snapshot`
(databases and internal services: postgres), and their rollbacks from the audit trail."""

import pytest

from napdms_ops.release.versions import ReleaseError
from tests.unit.release_fakes import World


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def test_a_held_deploy_sets_the_service_tag_and_applies_it(world):
    outcome = world.deployer().deploy("gitea", "1.24.7")
    assert (outcome.strategy, outcome.result) == ("held", "ok")
    assert world.running["napdms-dev-gitea-1"] == "1.24.7"
    assert ("set", {"services.gitea.tag": "1.24.7"}) in world.events


def test_a_held_deploy_measures_the_gap(world):
    outcome = world.deployer().deploy("gitea", "1.24.7")
    assert outcome.timings["gap"] >= 0


def test_a_held_deploy_that_does_not_turn_healthy_gets_the_previous_image_back(world):
    before = world.stack().services["gitea"].tag
    world.unhealthy["1.24.7"] = "no answer on :3000"
    outcome = world.deployer().deploy("gitea", "1.24.7")
    assert outcome.result == "rolled-back"
    assert "no answer on :3000" in outcome.reason
    assert world.running["napdms-dev-gitea-1"] == before


def test_a_held_deploy_with_5xx_after_the_restart_rolls_back(world):
    from collections import Counter

    def count():
        world.proxy.counts += Counter({"5xx": 10, "2xx": 10})
        return Counter(world.proxy.counts)

    world.proxy.responses = count
    outcome = world.deployer().deploy("gitea", "1.24.7")
    assert (outcome.result, outcome.reason.startswith("5xx on")) == ("rolled-back", True)


def test_a_snapshot_deploy_backs_the_service_up_before_replacing_it(world):
    world.deployer().deploy("postgres", "17.7-bookworm")
    kinds = world.kinds()
    assert kinds.index("snapshot") < kinds.index("up")
    assert world.running["napdms-dev-postgres-1"] == "17.7-bookworm"


def test_a_snapshot_deploy_reports_the_downtime(world):
    outcome = world.deployer().deploy("postgres", "17.7-bookworm")
    assert (outcome.strategy, "downtime" in outcome.timings) == ("snapshot", True)


def test_a_failed_snapshot_refuses_the_deploy_and_changes_nothing(world):
    world.snapshot_fails = "restic: repository locked"
    outcome = world.deployer().deploy("postgres", "17.7-bookworm")
    assert outcome.result == "refused"
    assert "repository locked" in outcome.reason
    assert "up" not in world.kinds()


def test_a_failed_up_puts_the_previous_image_back(world):
    world.engine.fail_next_up = "docker: pull access denied"
    outcome = world.deployer().deploy("redis", "7.4.2-bookworm")
    assert outcome.result == "rolled-back"
    assert "pull access denied" in outcome.reason
    assert world.stack().services["redis"].tag != "7.4.2-bookworm"


def test_rollback_puts_back_the_image_the_last_deploy_replaced(world):
    before = world.stack().services["gitea"].tag
    world.deployer().deploy("gitea", "1.24.7")
    outcome = world.deployer().rollback("gitea")
    assert (outcome.action, outcome.result, outcome.to_version) == ("rollback", "ok", before)
    assert world.running["napdms-dev-gitea-1"] == before


def test_rollback_without_a_deploy_in_the_audit_trail_is_refused_with_the_fix(world):
    with pytest.raises(ReleaseError, match=r"^dev: gitea: no successful deploy.*napdms-ops deploy"):
        world.deployer().rollback("gitea")


def _deployed_once(world: World) -> None:
    world.deployer().deploy("postgres", "17.6-bookworm")
    world.deployer().deploy("gitea", "1.24.6")


def test_deploy_all_deploys_what_the_stack_file_names_in_dependency_order(world):
    _deployed_once(world)
    world.engine.set_values({"services.gitea.tag": "1.24.7", "services.postgres.tag": "17.7"})
    outcomes = world.deployer().deploy_all()
    assert [(o.service, o.to_version) for o in outcomes] == [
        ("postgres", "17.7"),
        ("gitea", "1.24.7"),
    ]


def test_deploy_all_stops_at_the_first_failure(world):
    _deployed_once(world)
    world.engine.set_values({"services.gitea.tag": "1.24.7", "services.postgres.tag": "17.7"})
    world.unhealthy["17.7"] = "could not start"
    outcomes = world.deployer().deploy_all()
    assert [(o.service, o.result) for o in outcomes] == [("postgres", "rolled-back")]


def test_deploy_all_rolls_a_failure_back_to_the_version_that_ran(world):
    _deployed_once(world)
    world.engine.set_values({"services.postgres.tag": "17.7"})
    world.unhealthy["17.7"] = "could not start"
    world.deployer().deploy_all()
    assert world.running["napdms-dev-postgres-1"] == "17.6-bookworm"


def test_an_unknown_service_is_an_error_naming_the_stack(world):
    with pytest.raises(ReleaseError, match=r"^dev: nope: not a service of this stack"):
        world.deployer().deploy("nope", "1.0")


def test_a_service_without_backed_up_data_is_replaced_without_a_snapshot(world):
    outcome = world.deployer().deploy("blackbox", "v0.27.1")
    assert (outcome.strategy, outcome.result) == ("snapshot", "ok")
    assert "snapshot" not in world.kinds()


def test_a_held_gap_ends_when_the_new_container_answers_through_the_proxy(world):
    world.health_delay_s = 10.0
    outcome = world.deployer().deploy("gitea", "1.24.7")
    assert outcome.result == "ok"
    assert outcome.timings["gap"] < 1.0, "users wait until it answers, not for Docker's check"


def test_a_snapshot_downtime_lasts_until_docker_calls_the_new_container_healthy(world):
    world.health_delay_s = 10.0
    outcome = world.deployer().deploy("redis", "7.4.2-bookworm")
    assert outcome.timings["downtime"] >= 10.0
