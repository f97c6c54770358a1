"""The proxy's TLS against a real ACME server (issue 13, section 6).

Caddy (the stand-in image, hardened as production runs it) gets the Caddyfile exactly as the
catalog renders it for a staging stack whose `tls.acme_ca` points at pebble, Let's Encrypt's ACME
test server, and `tls.acme_ca_root` at the CA of pebble's own TLS certificate. Everything talks
over one Docker network: pebble reaches each site name (a network alias of the Caddy container)
for its HTTP-01 and TLS-ALPN-01 challenges on 8080/8443, as Let's Encrypt reaches 80/443 in
production; a busybox web server answers as every upstream replica; the real blackbox exporter
probes the sites as Prometheus' prober does.

Caddy 2.6 (the stand-in; prod runs 2.10) races when several names order their first certificate
at once: each registers an ACME account and the stored account can end up with one
registration's key and another's URL, so every later order fails JWS verification. The first
boot therefore serves one site only (its account is stored whole), and the catalog's complete
Caddyfile follows with a restart.

Pebble issues certificates valid for CERT_LIFETIME_S only, so Caddy's renewal window (the last
third of a certificate's life) comes within the test. Caddy checks that window every ten minutes
and whenever it loads a certificate from its storage, which a restart does: the tests restart the
container instead of waiting.

The tests run in file order and share one edge: the renewal test replaces the certificate the
first tests saw, and the last test stops pebble. About 60 s in all.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import os
import secrets
import socket
import ssl
import time
import urllib.request
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from docker.errors import NotFound

from components.catalog import generated_files
from components.catalog.proxy import SPEC
from components.settings.stack import load_stack
from tests.live.engine import ensure_engine
from tests.live.standins import standin_image
from tests.program import stack_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the live engine needs root")

PREFIX = f"napdms-tlstest-{secrets.token_hex(4)}"
PEBBLE = "/usr/bin/pebble"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
PEBBLE_ALIAS = "pebble"
CERT_LIFETIME_S = 45
"""Pebble's certificate lifetime: Caddy renews in the last third (15 s) of it."""
RENEWAL_WINDOW_S = CERT_LIFETIME_S / 3
CADDY_UID = 1000
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "SAMEORIGIN",
}
ALERT_THRESHOLD_S = 14 * 86400
"""`CertificateExpiringSoon` fires when `probe_ssl_earliest_cert_expiry - time()` is below this."""
TIMEOUT_S = 30


@dataclass
class Edge:
    """The running proxy and what the tests need to reach it."""

    caddy: object
    pebble: object
    network: str
    blackbox_url: str
    sites: list[str]
    pebble_root: Path
    """The root pebble issues site certificates under (fetched from its management API)."""

    @property
    def caddy_ip(self) -> str:
        """Caddy's address now: a restart may give the container another one."""
        return _ip(self.caddy, self.network)

    def caddy_log(self, lines: int = 40) -> str:
        """Caddy's last log lines: what it tried with the ACME server."""
        return self.caddy.logs(tail=lines).decode(errors="replace")

    def served(self, site: str) -> x509.Certificate:
        """The leaf certificate Caddy presents for `site`, trusted through pebble's root."""
        with _tls(self.caddy_ip, site, self.pebble_root) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


@contextlib.contextmanager
def _tls(address: str, site: str, root: Path):
    """A TLS connection to Caddy's 8443 at `address` for `site`, its certificate verified for
    `site` against `root`."""
    context = ssl.create_default_context(cafile=str(root))
    with (
        socket.create_connection((address, 8443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=site) as tls,
    ):
        yield tls


def https_get(edge: Edge, site: str) -> http.client.HTTPResponse:
    """The response to GET https://`site`/ from Caddy (its body read)."""
    with _tls(edge.caddy_ip, site, edge.pebble_root) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {site}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        response.read()
        return response


def _ca(tmp: Path) -> tuple[str, Path, Path]:
    """A throwaway CA and, signed by it, pebble's TLS certificate for the name PEBBLE_ALIAS:
    (CA certificate PEM, certificate file, key file)."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, key, signer, *, ca: bool, names=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("napdms tlstest CA", "napdms tlstest CA", ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(
        PEBBLE_ALIAS, "napdms tlstest CA", key, ca_key, ca=False, names=[PEBBLE_ALIAS]
    )
    cert_file, key_file = tmp / "pebble-cert.pem", tmp / "pebble-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_cert.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file


def _until(what: str, check, timeout_s: float = TIMEOUT_S, *, witness=None):
    """check()'s first truthy result, polled every 0.2 s; fails naming `what` at the deadline
    (and with what `witness`, if given, shows of the cause)."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, ssl.SSLError, http.client.HTTPException) as error:
            last_error = error
        time.sleep(0.2)
    shown = f"\n{witness()}" if witness else ""
    raise AssertionError(f"{what} within {timeout_s:.0f} s (last error: {last_error}){shown}")


def _ip(container, network: str) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def _wait_until(moment: datetime.datetime) -> None:
    remaining = (moment - datetime.datetime.now(datetime.UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining)


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    for binary in (PEBBLE, BLACKBOX):
        if not Path(binary).exists():
            pytest.fail(f"{binary} is missing: apt-get install pebble prometheus-blackbox-exporter")
    client = ensure_engine()
    image = standin_image("docker.io/library/caddy", client)
    tmp = tmp_path_factory.mktemp("tls")
    ca_pem, pebble_cert, pebble_key = _ca(tmp)

    values = stack_config("staging")
    values["tls"] = {
        "mode": "acme",
        "acme_email": "ops@nap-dms.example.org",
        "acme_ca": f"https://{PEBBLE_ALIAS}:14000/dir",
        "acme_ca_root": ca_pem,
    }
    context = load_stack("staging", values, set()).context
    config_dir = tmp / "etc-caddy"
    config_dir.mkdir()
    first_site = next(name for name, spec in context.services.items() if spec.public is not None)
    _write_proxy_files(config_dir, _one_site(context, first_site))
    sites = [
        f"{spec.public.subdomain}.{context.domain}"
        for spec in context.services.values()
        if spec.public is not None
    ]
    upstreams = {
        replica: spec.public.port
        for name, spec in context.services.items()
        if spec.public is not None
        for replica in context.replica_names(name)
    }

    (tmp / "pebble.json").write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": "0.0.0.0:14000",
                    "managementListenAddress": "0.0.0.0:15000",
                    "certificate": "/pebble/pebble-cert.pem",
                    "privateKey": "/pebble/pebble-key.pem",
                    # Where Caddy listens inside the container (published as 80/443).
                    "httpPort": 8080,
                    "tlsPort": 8443,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                    "certificateValidityPeriod": CERT_LIFETIME_S,
                }
            }
        )
    )
    for path in (tmp, pebble_cert, pebble_key, tmp / "pebble.json"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    storage = {}
    for volume in ("data", "config"):
        storage[volume] = tmp / f"caddy-{volume}"
        storage[volume].mkdir()
        os.chown(storage[volume], CADDY_UID, CADDY_UID)

    network = client.networks.create(PREFIX, driver="bridge", labels={"napdms.test": "tls"})
    made = []

    def run(name, command, aliases, **options):
        container = client.containers.create(
            image,
            command,
            name=f"{PREFIX}-{name}",
            network=PREFIX,
            networking_config={PREFIX: client.api.create_endpoint_config(aliases=aliases)},
            labels={"napdms.test": "tls"},
            **options,
        )
        made.append(container)
        container.start()
        return container

    try:
        pebble = run(
            "pebble",
            [PEBBLE, "-config", "/pebble/pebble.json"],
            [PEBBLE_ALIAS],
            user="65534:65534",
            environment={
                # Validate at once, never reject a good nonce, and always validate anew: the
                # renewal must pass the challenges again, as it would at Let's Encrypt.
                "PEBBLE_VA_NOSLEEP": "1",
                "PEBBLE_WFE_NONCEREJECT": "0",
                "PEBBLE_AUTHZREUSE": "0",
            },
            volumes={PEBBLE: {"bind": PEBBLE, "mode": "ro"}, str(tmp): {"bind": "/pebble"}},
        )
        serve = " ".join(
            f"busybox httpd -f -p {port} -h /tmp/www &" for port in set(upstreams.values())
        )
        run(
            "upstream",
            ["sh", "-c", f"mkdir -p /tmp/www && echo upstream > /tmp/www/index.html; {serve} wait"],
            list(upstreams),
            user="65534:65534",
        )
        caddy = run(
            "proxy",
            SPEC.command,
            sites,
            user=SPEC.user,
            read_only=True,
            cap_drop=["ALL"],
            cap_add=[cap.name for cap in SPEC.cap_add],
            security_opt=["no-new-privileges"],
            tmpfs={path: "" for path in SPEC.tmpfs},
            volumes={
                str(config_dir): {"bind": SPEC.config_dir, "mode": "ro"},
                str(storage["data"]): {"bind": "/data"},
                str(storage["config"]): {"bind": "/config"},
            },
        )
        (tmp / "blackbox.yml").write_text(
            json.dumps(
                {
                    "modules": {
                        "https": {
                            "prober": "http",
                            "timeout": "5s",
                            "http": {
                                "fail_if_not_ssl": True,
                                "tls_config": {"ca_file": "/pebble/pebble-root.pem"},
                            },
                        }
                    }
                }
            )
        )
        pebble_ip = _ip(pebble, PREFIX)
        management = ssl.create_default_context(cadata=ca_pem)
        # The management API is reached by address, not by the name its certificate holds.
        management.check_hostname = False
        root = _until(
            "pebble's management API answers",
            lambda: urllib.request.urlopen(
                f"https://{pebble_ip}:15000/roots/0", context=management, timeout=5
            ).read(),
        )
        pebble_root = tmp / "pebble-root.pem"
        pebble_root.write_bytes(root)
        pebble_root.chmod(0o644)
        blackbox = run(
            "blackbox",
            [BLACKBOX, "--config.file=/pebble/blackbox.yml", "--web.listen-address=:9115"],
            [],
            user="65534:65534",
            volumes={BLACKBOX: {"bind": BLACKBOX, "mode": "ro"}, str(tmp): {"bind": "/pebble"}},
        )
        result = Edge(
            caddy=caddy,
            pebble=pebble,
            network=PREFIX,
            blackbox_url=f"http://{_ip(blackbox, PREFIX)}:9115",
            sites=sites,
            pebble_root=pebble_root,
        )
        first = f"{context.services[first_site].public.subdomain}.{context.domain}"
        _until(f"Caddy serves a certificate for {first}", partial(result.served, first))
        # The account is stored: now the catalog's Caddyfile, every site ordering with it.
        _write_proxy_files(config_dir, context)
        caddy.restart(timeout=5)
        _serves_all(result, TIMEOUT_S)
        yield result
    finally:
        for container in made:
            try:
                container.remove(force=True, v=True)
            except NotFound:
                pass
        network.remove()


def _one_site(context, service: str):
    """`context` with `service` the only public one."""
    services = {
        name: spec
        for name, spec in context.services.items()
        if spec.public is None or name == service
    }
    return replace(context, services=services)


def _write_proxy_files(config_dir: Path, context) -> None:
    for name, content in generated_files("proxy", context).items():
        (config_dir / name).write_text(content)


def _serves_all(edge: Edge, timeout_s: float) -> None:
    for site in edge.sites:
        _until(f"Caddy serves a certificate for {site}", partial(edge.served, site), timeout_s)


def probe(edge: Edge, site: str) -> dict[str, float]:
    """The blackbox exporter's unlabelled metrics for one probe of https://`site`:8443/."""
    query = f"{edge.blackbox_url}/probe?module=https&target=https://{site}:8443/"
    with urllib.request.urlopen(query, timeout=10) as response:
        text = response.read().decode()
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if line[:1].isalpha())
    return {name: float(value) for name, value in samples if "{" not in name}


def test_pebble_issues_each_site_a_certificate_for_its_name(edge):
    for site in edge.sites:
        leaf = edge.served(site)
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [site]


def test_every_site_sends_hsts_and_the_security_headers(edge):
    for site in edge.sites:
        response = https_get(edge, site)
        headers = response.headers
        assert response.status == 200, f"{site}: the upstream answers through the proxy"
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value, f"{site}: {name}"
        assert "Server" not in headers, f"{site} names its server software"


def test_http_redirects_to_https_on_the_public_port(edge):
    for site in edge.sites:
        connection = http.client.HTTPConnection(edge.caddy_ip, 8080, timeout=5)
        try:
            connection.request("GET", "/login?next=%2F", headers={"Host": site})
            response = connection.getresponse()
        finally:
            connection.close()
        assert response.status == 308
        assert response.headers["Location"] == f"https://{site}/login?next=%2F"


def test_caddy_counts_requests_on_its_metrics_port(edge):
    site = edge.sites[0]
    https_get(edge, site)
    with urllib.request.urlopen(f"http://{edge.caddy_ip}:{SPEC.metrics.port}/metrics") as response:
        samples = [line for line in response.read().decode().splitlines() if line[:1].isalpha()]
    served = [line for line in samples if line.startswith("caddy_http_requests_total{")]
    assert served and all(float(line.rsplit(" ", 1)[1]) >= 1 for line in served)


def test_a_certificate_in_its_renewal_window_is_renewed(edge):
    site = edge.sites[0]
    old = edge.served(site)
    _wait_until(old.not_valid_after_utc - datetime.timedelta(seconds=RENEWAL_WINDOW_S - 1))
    edge.caddy.restart(timeout=5)
    new = _until(
        "Caddy serves a renewed certificate",
        lambda: (cert := edge.served(site)).serial_number != old.serial_number and cert,
        witness=edge.caddy_log,
    )
    assert new.not_valid_after_utc > old.not_valid_after_utc


def test_without_acme_the_old_certificate_stays_and_the_probe_reads_its_expiry(edge):
    site = edge.sites[0]
    edge.pebble.stop(timeout=2)
    old = edge.served(site)
    _wait_until(old.not_valid_after_utc - datetime.timedelta(seconds=RENEWAL_WINDOW_S - 1))
    edge.caddy.restart(timeout=5)
    kept = _until("Caddy serves again after its restart", lambda: edge.served(site))
    assert kept.serial_number == old.serial_number

    metrics = probe(edge, site)
    assert metrics["probe_success"] == 1
    expiry = metrics["probe_ssl_earliest_cert_expiry"]
    assert expiry == old.not_valid_after_utc.timestamp()
    assert expiry - time.time() < ALERT_THRESHOLD_S, "CertificateExpiringSoon would not fire"
