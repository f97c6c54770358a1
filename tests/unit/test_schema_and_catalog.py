"""The exported JSON Schema, the catalog's own consistency, and generated config files."""

import json
import subprocess
import sys

import jsonschema
import pytest

from components.catalog import CATALOG, generated_files
from components.settings import load_stack
from tests.program import ROOT, STACKS, stack_config


@pytest.fixture(scope="module")
def schema() -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "napdms_ops", "schema"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


@pytest.mark.parametrize("stack", STACKS)
def test_schema_accepts_each_stack_file(schema, stack):
    jsonschema.validate(stack_config(stack), schema)


def test_schema_rejects_an_unknown_top_level_key(schema):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**stack_config("dev"), "replicas": 2}, schema)


def test_schema_lists_every_catalog_service(schema):
    names = schema["properties"]["services"]["propertyNames"]["enum"]
    assert names == list(CATALOG)


@pytest.mark.parametrize("name", list(CATALOG))
def test_catalog_dependencies_exist(name):
    missing = [d for d in CATALOG[name].depends_on if d not in CATALOG]
    assert missing == [], f"{name} depends on unknown {missing}"


@pytest.mark.parametrize("name", list(CATALOG))
def test_catalog_config_files_have_a_volume_to_land_in(name):
    context = _context("dev")
    if generated_files(name, context):
        assert CATALOG[name].config_dir, f"{name} renders files but has no config_dir"


def test_secrets_shared_between_services_are_one_secret():
    users = {}
    for name, spec in CATALOG.items():
        for use in spec.secrets:
            users.setdefault(use.secret, set()).add(name)
    assert users["napdms-db-password"] == {"postgres", "napdms-backend"}
    assert users["redis-password"] == {"redis", "napdms-backend"}


def _context(stack: str):
    return load_stack(stack, stack_config(stack), set()).context


def test_caddyfile_balances_every_public_service_over_its_live_replicas():
    caddyfile = generated_files("proxy", _context("prod"))["Caddyfile"]
    assert "reverse_proxy napdms-backend-blue-1:8000 napdms-backend-blue-2:8000 {" in caddyfile
    assert "reverse_proxy rocketchat-blue-1:3000 rocketchat-blue-2:3000 {" in caddyfile
    assert "reverse_proxy gitea-1:3000 {" in caddyfile
    for spec in CATALOG.values():
        if spec.public:
            assert f"{spec.public.subdomain}.nap-dms.example.org {{" in caddyfile, (
                f"{spec.name} not routed"
            )


def test_caddyfile_uses_acme_in_prod_and_the_local_ca_in_dev():
    assert (
        "\temail ops@nap-dms.example.org\n"
        in generated_files("proxy", _context("prod"))["Caddyfile"]
    )
    assert "\tlocal_certs\n" in generated_files("proxy", _context("dev"))["Caddyfile"]
