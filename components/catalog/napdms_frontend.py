"""NAP-DMS frontend: our web client. Image contract: static server on 8080, uid 10001, wget."""

from components.model.spec import HealthCheck, Probe, PublicRoute, ServiceSpec

SPEC = ServiceSpec(
    name="napdms-frontend",
    description="NAP-DMS web client (our image)",
    image="ghcr.io/nap-dms/nap-dms-frontend",
    tag="1.0.0",
    user="10001:10001",
    env={"API_URL": "https://api.{domain}"},
    tmpfs=["/tmp"],
    networks=["app"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:8080/"]),
    memory="256m",
    cpus=0.5,
    stateless=True,
    public=PublicRoute(subdomain="dms", port=8080),
    probe=Probe(kind="http", port=8080, path="/"),
)
