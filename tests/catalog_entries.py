"""A catalog entry no catalog module declares, for the tests that show a new service gets its
scraping, probes, alerts, site and panels with no other edit."""

from __future__ import annotations

import dataclasses

from components.model.context import CatalogContext
from components.model.spec import (
    HealthCheck,
    MetricsEndpoint,
    Probe,
    PublicRoute,
    ServiceSpec,
)


def fake_service(**declared) -> ServiceSpec:
    """`fake-wiki`: metrics on 9000, an http probe and a public site on 8080, plus `declared`."""
    return ServiceSpec(
        name="fake-wiki",
        description="a service only the tests know",
        image="docker.io/example/wiki",
        tag="1.0.0",
        user="1000:1000",
        networks=["app"],
        health=HealthCheck(test=["CMD", "true"]),
        memory="128m",
        cpus=0.5,
        metrics=MetricsEndpoint(port=9000),
        probe=Probe(kind="http", port=8080, path="/health"),
        public=PublicRoute(subdomain="wiki", port=8080),
        **declared,
    )


def with_service(context: CatalogContext, spec: ServiceSpec) -> CatalogContext:
    """`context` with `spec` enabled beside Prometheus on its host, as the stack would place it."""
    return dataclasses.replace(
        context,
        services={**context.services, spec.name: spec},
        placements={**context.placements, spec.name: context.placements["prometheus"]},
    )
