"""`napdms-ops images` lists what each stack runs: catalog plus overrides, and the init image."""

import subprocess
import sys

import pytest

from components.catalog import CATALOG
from components.hosts import INIT_IMAGE
from components.settings import read_stack_file
from napdms_ops.images import STACKS, stack_images
from tests.program import ROOT


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_runs_the_caddy_proxy_and_the_busybox_init_image(stack):
    refs = stack_images(stack)
    assert any(ref.startswith("docker.io/library/caddy:") for ref in refs)
    assert INIT_IMAGE in refs and INIT_IMAGE.startswith("docker.io/library/busybox:")


@pytest.mark.parametrize("stack", STACKS)
def test_the_list_is_sorted_without_duplicates(stack):
    refs = stack_images(stack)
    assert refs == sorted(set(refs))


def test_a_stack_override_of_a_tag_shows_up():
    values, secret_keys = read_stack_file("staging")
    services = dict(values.get("services", {}))
    services["redis"] = {**services.get("redis", {}), "tag": "7.4.6-bookworm"}
    refs = stack_images("staging", {**values, "services": services}, secret_keys)
    assert "docker.io/library/redis:7.4.6-bookworm" in refs
    assert CATALOG["redis"].image_ref not in refs


def test_each_colour_of_a_blue_green_service_is_listed():
    values, secret_keys = read_stack_file("staging")
    services = dict(values.get("services", {}))
    services["napdms-backend"] = {
        **services.get("napdms-backend", {}),
        "colours": {"live": "blue", "green": {"tag": "1.0.1"}},
    }
    refs = stack_images("staging", {**values, "services": services}, secret_keys)
    backend = CATALOG["napdms-backend"]
    assert f"{backend.image}:1.0.1" in refs, "the green colour's image"
    assert backend.image_ref in refs, "the blue colour's image (the catalog's)"


def test_the_command_prints_one_reference_per_line():
    result = subprocess.run(
        [sys.executable, "-m", "napdms_ops", "images", "--stack", "prod"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == stack_images("prod")
