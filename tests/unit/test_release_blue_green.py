"""Blue-green deploys and rollbacks of a stateless service (napdms-backend in dev), against a fake
engine, runtime and proxy: the order of the steps, the refusals and the automatic rollback."""

from collections import Counter

import pytest

from tests.unit.release_fakes import World

SERVICE = "napdms-backend"
LIVE = f"services.{SERVICE}.colours.live"


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def _index(world: World, event: tuple) -> int:
    return world.events.index(event)


def test_a_deploy_starts_the_idle_colour_before_the_switch(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    start = _index(world, ("replace", "napdms-dev-napdms-backend-green-1", "1.0.1"))
    assert start < _index(world, ("load", "green"))


def test_a_deploy_drains_after_the_switch(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    assert _index(world, ("load", "green")) < _index(world, ("upstreams",))


def test_a_deploy_records_the_live_colour_in_the_config_after_the_switch(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    recorded = next(i for i, e in enumerate(world.events) if e[0] == "set" and LIVE in e[1])
    assert _index(world, ("load", "green")) < recorded
    assert world.stack().services[SERVICE].colours.live == "green"


def test_a_deploy_makes_the_services_own_tag_the_live_version(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    assert world.stack().services[SERVICE].tag == "1.0.1"


def test_deploy_all_leaves_a_service_alone_once_deployed(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    world.events.clear()
    assert world.deployer().deploy_all() == []
    assert "up" not in world.kinds()


def test_deploy_all_deploys_an_edited_tag_to_the_idle_colour(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    world.engine.set_values({f"services.{SERVICE}.tag": "1.0.2"})
    (outcome,) = world.deployer().deploy_all()
    assert (outcome.to_version, outcome.to_colour, outcome.result) == ("1.0.2", "blue", "ok")
    assert world.running["napdms-dev-napdms-backend-green-1"] == "1.0.1"


def test_a_deploy_loads_exactly_the_caddyfile_the_program_renders(world):
    from components.catalog import proxy

    world.deployer().deploy(SERVICE, "1.0.1")
    assert world.proxy.loaded == [proxy.files(world.stack().context)["Caddyfile"]]


def test_a_deploy_leaves_the_old_colour_running_with_its_image(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    assert world.running["napdms-dev-napdms-backend-blue-1"] == "1.0.0"
    assert not any(e[:2] == ("replace", "napdms-dev-napdms-backend-blue-1") for e in world.events)


def test_a_deploy_is_journalled_with_colours_versions_and_result(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    record = world.journal.records()[-1]
    assert (record.action, record.result, record.reason) == ("deploy", "ok", None)
    assert (record.from_colour, record.to_colour) == ("blue", "green")
    assert (record.from_digest, record.to_digest) == ("1.0.0", "1.0.1")


def test_the_switch_itself_is_journalled(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    assert [r.action for r in world.journal.records()] == ["switch", "deploy"]


def test_the_drain_waits_for_in_flight_requests_of_the_old_colour(world):
    world.proxy.in_flight = [
        {"napdms-backend-blue-1:8000": 2, "napdms-backend-green-1:8000": 5},
        {"napdms-backend-blue-1:8000": 1},
        {"napdms-backend-blue-1:8000": 0},
    ]
    outcome = world.deployer(poll_s=0.5).deploy(SERVICE, "1.0.1")
    assert outcome.timings["drain"] == 1.0


def test_the_drain_ends_with_its_window(world):
    world.proxy.in_flight = [{"napdms-backend-blue-1:8000": 3}]
    outcome = world.deployer(drain_s=2.0, poll_s=0.5).deploy(SERVICE, "1.0.1")
    assert (outcome.result, outcome.timings["drain"]) == ("ok", 2.0)


def test_an_unhealthy_new_colour_is_refused_with_its_health_output(world):
    world.unhealthy["1.0.1"] = "connection refused"
    outcome = world.deployer().deploy(SERVICE, "1.0.1")
    assert outcome.result == "refused"
    assert "napdms-dev-napdms-backend-green-1 unhealthy" in outcome.reason
    assert "connection refused" in outcome.reason


def test_an_unhealthy_new_colour_switches_nothing(world):
    world.unhealthy["1.0.1"] = "connection refused"
    world.deployer().deploy(SERVICE, "1.0.1")
    assert "load" not in world.kinds()
    assert world.stack().services[SERVICE].colours.live == "blue"


def test_an_unhealthy_new_colour_gets_its_previous_image_back(world):
    world.unhealthy["1.0.1"] = "connection refused"
    world.deployer().deploy(SERVICE, "1.0.1")
    assert world.running["napdms-dev-napdms-backend-green-1"] == "1.0.0"


def test_a_new_colour_the_proxy_cannot_reach_is_refused_once_the_health_timeout_is_over(world):
    world.proxy.unready.add("http://napdms-backend-green-1:8000/healthz")
    outcome = world.deployer().deploy(SERVICE, "1.0.1")
    assert outcome.result == "refused"
    # start period 30 s, then 3 checks each up to 10 s apart plus 5 s of timeout
    assert "not ready from the proxy after 75 s" in outcome.reason


def test_a_refusal_is_journalled_with_its_reason(world):
    world.unhealthy["1.0.1"] = "connection refused"
    world.deployer().deploy(SERVICE, "1.0.1")
    record = world.journal.records()[-1]
    assert (record.result, "connection refused" in record.reason) == ("refused", True)


def test_5xx_after_the_switch_roll_back_with_the_reason(world):
    world.proxy.after_switch = Counter({"2xx": 10, "5xx": 5})
    outcome = world.deployer().deploy(SERVICE, "1.0.1")
    assert outcome.result == "rolled-back"
    assert outcome.reason.startswith("5xx on 10 of 30 responses since the switch")


def test_a_rollback_after_5xx_switches_back_and_records_the_old_colour_live(world):
    world.proxy.after_switch = Counter({"2xx": 10, "5xx": 5})
    world.deployer().deploy(SERVICE, "1.0.1")
    assert [e for e in world.events if e[0] == "load"] == [("load", "green"), ("load", "blue")]
    assert world.stack().services[SERVICE].colours.live == "blue"


def test_a_rolled_back_deploy_never_records_the_bad_colour_live(world):
    world.proxy.after_switch = Counter({"2xx": 10, "5xx": 5})
    world.deployer().deploy(SERVICE, "1.0.1")
    assert not any(e[0] == "set" and e[1].get(LIVE) == "green" for e in world.events)


def test_the_new_colour_is_recorded_live_only_after_its_watch_window(world):
    world.deployer(watch_s=5.0, check_s=1.0).deploy(SERVICE, "1.0.1")
    recorded = next(i for i, e in enumerate(world.events) if e[0] == "set" and LIVE in e[1])
    watched = [i for i, e in enumerate(world.events) if e[0] == "responses"]
    assert watched and max(watched) < recorded, "the last look of the watch precedes the record"


def test_a_few_5xx_within_the_budget_do_not_roll_back(world):
    world.proxy.after_switch = Counter({"2xx": 100, "5xx": 1})
    assert world.deployer().deploy(SERVICE, "1.0.1").result == "ok"


def test_failed_readiness_probes_after_the_switch_roll_back(world):
    def fail_after_switch(url: str) -> bool:
        return not world.proxy.loaded

    world.proxy.ready = fail_after_switch
    outcome = world.deployer().deploy(SERVICE, "1.0.1")
    assert outcome.result == "rolled-back"
    assert "failed 3 readiness probes in a row" in outcome.reason


def test_a_restart_of_the_new_colour_in_the_watch_window_rolls_back(world):
    original = world.proxy.responses

    def restart_once_switched():
        if world.proxy.loaded:
            name = "napdms-dev-napdms-backend-green-1"
            state = world.containers[name]
            world.containers[name] = type(state)(**{**state.__dict__, "restart_count": 1})
        return original()

    world.proxy.responses = restart_once_switched
    outcome = world.deployer().deploy(SERVICE, "1.0.1")
    assert (outcome.result, "restarted" in outcome.reason) == ("rolled-back", True)


def test_a_prod_tag_without_digest_is_refused_with_the_fix(tmp_path):
    from napdms_ops.release.versions import ReleaseError

    world = World(tmp_path, "prod")
    with pytest.raises(ReleaseError, match=r"^prod: napdms-backend: .*pins images by digest.*"):
        world.deployer().deploy(SERVICE, "1.0.1")


def test_rollback_flips_to_the_idle_colour_without_starting_anything(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    world.events.clear()
    outcome = world.deployer().rollback(SERVICE)
    assert (outcome.result, outcome.to_colour) == ("ok", "blue")
    assert "replace" not in world.kinds()
    assert world.events[0] == ("load", "blue")


def test_rollback_records_the_previous_colour_live(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    world.deployer().rollback(SERVICE)
    assert world.stack().services[SERVICE].colours.live == "blue"
    assert world.journal.records()[-1].action == "rollback"


def test_rollback_is_refused_while_the_previous_colour_is_unhealthy(world):
    world.deployer().deploy(SERVICE, "1.0.1")
    name = "napdms-dev-napdms-backend-blue-1"
    world.containers[name] = type(world.containers[name])(exists=True, running=False)
    outcome = world.deployer().rollback(SERVICE)
    assert outcome.result == "refused"
    assert world.events.count(("load", "blue")) == 0
