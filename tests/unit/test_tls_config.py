"""The proxy's TLS (issue 13, section 6): which CA each stack's Caddy asks, the HTTP to HTTPS
redirect, HSTS and security headers on every public site, Caddy's metrics on an internal port,
and the `tls.acme_ca` / `tls.acme_ca_root` override with its refusals.

Where the rendered Caddyfile's meaning matters, Caddy itself reads it (`caddy adapt` to its JSON
config, `caddy validate`), so the tests check what Caddy will do, not how the text is spelled.
"""

from __future__ import annotations

import copy
import datetime
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.catalog import generated_files
from components.catalog.proxy import SPEC
from components.settings import SettingsError, load_stack
from tests.program import STACKS, stack_config

LE_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LE_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
PRIVATE_ACME = "https://acme.internal.example.org:9000/acme/acme/directory"
SECURITY_HEADERS = {
    "Strict-Transport-Security": ["max-age=31536000; includeSubDomains"],
    "X-Content-Type-Options": ["nosniff"],
    "Referrer-Policy": ["strict-origin-when-cross-origin"],
    "X-Frame-Options": ["SAMEORIGIN"],
}


def _ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "private ACME CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


CA_PEM = _ca_pem()


def tls_values(stack: str, **tls) -> dict:
    """The stack file's config with these `tls` keys set."""
    values = copy.deepcopy(stack_config(stack))
    values["tls"] = {**values["tls"], **tls}
    return values


def rendered(stack: str, **tls) -> dict[str, str]:
    """The proxy's generated files for `stack`, with these `tls` keys set."""
    return generated_files("proxy", load_stack(stack, tls_values(stack, **tls), set()).context)


def _caddy(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    caddy = shutil.which("caddy")
    assert caddy, "caddy is not installed: apt-get install caddy (.ci/run does)"
    home = {"HOME": str(cwd), "XDG_DATA_HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd)}
    return subprocess.run(
        [caddy, *argv], capture_output=True, text=True, cwd=cwd, env=home, timeout=60
    )


def adapted(files: dict[str, str], tmp_path: Path) -> dict:
    """Caddy's JSON config for the rendered Caddyfile (`caddy adapt`)."""
    (tmp_path / "Caddyfile").write_text(files["Caddyfile"])
    result = _caddy("adapt", "--config", "Caddyfile", "--adapter", "caddyfile", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-800:]
    return json.loads(result.stdout)


def issuers(config: dict) -> list[dict]:
    policies = config["apps"]["tls"]["automation"]["policies"]
    return [issuer for policy in policies for issuer in policy["issuers"]]


def server_on(config: dict, listen: str) -> dict:
    (server,) = [s for s in config["apps"]["http"]["servers"].values() if s["listen"] == [listen]]
    return server


def public_sites(stack: str) -> list[str]:
    context = load_stack(stack, stack_config(stack), set()).context
    return [
        f"{spec.public.subdomain}.{context.domain}"
        for spec in context.services.values()
        if spec.public is not None
    ]


def handlers(routes: list[dict]) -> list[dict]:
    """Every handler in `routes`, subroutes flattened."""
    found = []
    for route in routes:
        for handler in route.get("handle", []):
            found.append(handler)
            found += handlers(handler.get("routes", []))
    return found


def site_handlers(config: dict, site: str) -> list[dict]:
    """The handlers of the HTTPS route that serves `site`."""
    (route,) = [
        route
        for route in server_on(config, ":8443")["routes"]
        if any(site in match.get("host", []) for match in route.get("match", []))
    ]
    return handlers([route])


def test_prod_orders_certificates_from_lets_encrypt_production_only(tmp_path):
    config = adapted(rendered("prod"), tmp_path)
    assert issuers(config) == [
        {"module": "acme", "ca": LE_PRODUCTION, "email": "ops@nap-dms.example.org"}
    ]


def test_staging_orders_certificates_from_lets_encrypt_staging(tmp_path):
    config = adapted(rendered("staging"), tmp_path)
    assert [issuer["ca"] for issuer in issuers(config)] == [LE_STAGING]


def test_dev_issues_certificates_from_caddys_internal_ca(tmp_path):
    config = adapted(rendered("dev"), tmp_path)
    assert [issuer["module"] for issuer in issuers(config)] == ["internal"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_public_site_sends_hsts_and_the_security_headers(stack, tmp_path):
    config = adapted(rendered(stack), tmp_path)
    for site in public_sites(stack):
        (headers,) = [h for h in site_handlers(config, site) if h["handler"] == "headers"]
        # Exactly these: HSTS without preload, which would be hard to take back.
        assert headers["response"]["set"] == SECURITY_HEADERS, site
        assert headers["response"]["delete"] == ["Server"], site
        # Deferred: applied to the upstream's response too, which may name its own server.
        assert headers["response"]["deferred"] is True, site


@pytest.mark.parametrize("stack", STACKS)
def test_caddys_http_to_https_redirect_stays_on(stack, tmp_path):
    # Caddy adds the redirects when it starts, so its adapted config only shows that nothing
    # turns them off; the live test follows one. Its Location names no port when the site is
    # on https_port, so browsers land on 443, which is published to 8443.
    config = adapted(rendered(stack), tmp_path)
    assert config["apps"]["http"]["https_port"] == 8443
    for server in config["apps"]["http"]["servers"].values():
        automatic = server.get("automatic_https", {})
        assert not automatic.get("disable") and not automatic.get("disable_redirects")
    assert all(site in json.dumps(server_on(config, ":8443")) for site in public_sites(stack))


def test_caddy_metrics_are_served_on_the_declared_unpublished_port(tmp_path):
    config = adapted(rendered("prod"), tmp_path)
    port = SPEC.metrics.port
    server = server_on(config, f":{port}")
    assert [h["handler"] for h in handlers(server["routes"]) if h["handler"] != "subroute"] == [
        "metrics"
    ]
    assert "tls_connection_policies" not in server, "plain HTTP: Prometheus scrapes it inside"
    assert port not in {p.internal for p in SPEC.ports}
    assert "proxy" in SPEC.monitors


def test_acme_ca_replaces_lets_encrypt(tmp_path):
    config = adapted(rendered("prod", acme_ca=PRIVATE_ACME), tmp_path)
    assert [issuer["ca"] for issuer in issuers(config)] == [PRIVATE_ACME]


def test_acme_ca_root_is_generated_beside_the_caddyfile_and_trusted_for_acme(tmp_path):
    files = rendered("prod", acme_ca=PRIVATE_ACME, acme_ca_root=CA_PEM)
    (root_file,) = [name for name in files if name != "Caddyfile"]
    assert "/" not in root_file
    assert x509.load_pem_x509_certificate(files[root_file].encode()).subject.rfc4514_string() == (
        "CN=private ACME CA"
    )
    config = adapted(files, tmp_path)
    (issuer,) = issuers(config)
    assert issuer["trusted_roots_pem_files"] == [f"{SPEC.config_dir}/{root_file}"]


def test_without_acme_ca_root_no_extra_file_is_generated():
    assert list(rendered("prod", acme_ca=PRIVATE_ACME)) == ["Caddyfile"]


@pytest.mark.parametrize("stack", STACKS)
def test_caddy_validates_the_rendered_caddyfile(stack, tmp_path):
    (tmp_path / "Caddyfile").write_text(rendered(stack)["Caddyfile"])
    result = _caddy("validate", "--config", "Caddyfile", "--adapter", "caddyfile", cwd=tmp_path)
    assert result.returncode == 0, f"caddy rejects the {stack} Caddyfile: {result.stderr[-800:]}"


def test_caddy_validates_a_private_acme_server_with_its_root(tmp_path):
    files = rendered("staging", acme_ca=PRIVATE_ACME, acme_ca_root=CA_PEM)
    for name, content in files.items():
        # The generated files sit together in the config dir, as the container sees them.
        (tmp_path / name).write_text(content.replace(f"{SPEC.config_dir}/", f"{tmp_path}/"))
    result = _caddy("validate", "--config", "Caddyfile", "--adapter", "caddyfile", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-800:]


URL_EXAMPLE = 'use e.g. "https://acme.example.org/directory"'


@pytest.mark.parametrize(
    ("tls", "line"),
    [
        pytest.param(
            {"acme_ca": "http://acme.example.org/directory"},
            'prod: tls.acme_ca: "http://acme.example.org/directory" is not an https URL: the ACME '
            "account key and certificate orders would cross the network unprotected; "
            + URL_EXAMPLE,
            id="plain-http",
        ),
        pytest.param(
            {"acme_ca": "https://ops:hunter2@acme.example.org/directory"},
            "prod: tls.acme_ca: the URL carries credentials (user:password@), which would be "
            "written into the Caddyfile in plain text; remove them (ACME authenticates by account "
            "key, or by acme_eab for servers that need it)",
            id="credentials",
        ),
        pytest.param(
            {"acme_ca": "https://acme.example.org/directory\n\tlocal_certs"},
            'prod: tls.acme_ca: "https://acme.example.org/directory\\n\\tlocal_certs" contains a '
            "space or control character; " + URL_EXAMPLE,
            id="line-break",
        ),
        pytest.param(
            {"acme_ca": "https://acme.example.org/dir?x={y}"},
            'prod: tls.acme_ca: "https://acme.example.org/dir?x={y}" is not an ACME directory '
            "URL; " + URL_EXAMPLE,
            id="not-a-directory-url",
        ),
        pytest.param(
            {"acme_ca": PRIVATE_ACME, "acme_ca_root": "not a certificate"},
            "prod: tls.acme_ca_root: is not one PEM certificate; paste the CA certificate, from "
            "-----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----, as a YAML block (|)",
            id="root-not-pem",
        ),
        pytest.param(
            {"acme_ca": PRIVATE_ACME, "acme_ca_root": CA_PEM + CA_PEM},
            "prod: tls.acme_ca_root: is not one PEM certificate; paste the CA certificate, from "
            "-----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----, as a YAML block (|)",
            id="root-two-certificates",
        ),
        pytest.param(
            {
                "acme_ca": PRIVATE_ACME,
                "acme_ca_root": CA_PEM
                + "-----BEGIN PRIVATE KEY-----\nMIGHAgEAhunter2\n-----END PRIVATE KEY-----\n",
            },
            "prod: tls.acme_ca_root: holds a private key (the value is not shown); give only the "
            "CA's certificate (-----BEGIN CERTIFICATE-----) and keep the key off the stack file",
            id="root-with-private-key",
        ),
        pytest.param(
            {"acme_ca_root": CA_PEM},
            "prod: tls: acme_ca_root trusts a private ACME server, but acme_ca does not name one; "
            "set acme_ca to its directory URL, or remove acme_ca_root (Let's Encrypt needs none)",
            id="root-without-acme-ca",
        ),
        pytest.param(
            {"mode": "internal", "acme_ca": PRIVATE_ACME},
            'prod: tls: mode "internal" issues certificates from Caddy\'s local CA and never '
            "asks an ACME server; remove acme_ca and acme_ca_root, or set mode: acme",
            id="acme-ca-in-internal-mode",
        ),
    ],
)
def test_a_bad_acme_override_ends_in_one_line_with_stack_key_and_fix(tls, line):
    with pytest.raises(SettingsError) as raised:
        load_stack("prod", tls_values("prod", **tls), set())
    assert raised.value.lines == [line]
