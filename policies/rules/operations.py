"""What keeps a container reproducible and operable: pinned image, health, restarts, logs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .facts import ContainerFacts
from .rule import container_rule

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
MAX_RESTART_RETRIES = 5
"""CIS 5.15: an on-failure policy gives up after at most this many attempts."""


@container_rule(
    id="image-not-pinned",
    title="Images are pinned by digest",
    severity="high",
    fix=(
        "run the image by repo@sha256:<digest> (HardenedService uses the RemoteImage repo_digest; "
        'pin a catalog "digest" to fix the pull)'
    ),
)
def image_not_pinned(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if c.image is None or c.image.startswith("sha256:") or _DIGEST.search(c.image):
        # Unknown until the pull (preview), or a local image id, which is content-addressed too.
        return
    name = c.image.rsplit("/", 1)[-1]
    tag = name.split(":", 1)[1] if ":" in name else ""
    if not tag:
        yield f"image {c.image!r} has neither tag nor digest, so it means :latest"
    elif tag == "latest" or tag.endswith("-latest"):
        yield f"image {c.image!r} floats: the next pull may run different code"
    else:
        yield f"image {c.image!r} is pinned by tag only; a tag can be moved to other content"


@container_rule(
    id="no-health-check",
    title="Containers have a health check",
    severity="medium",
    cis="5.27",
    fix=(
        "declare a health check (the catalog's health: a command the image has) "
        "so up waits and alerts fire"
    ),
)
def no_health_check(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if not c.health_test:
        yield "no health check: Docker reports it running even when it answers nothing"
    elif c.health_test[0].upper() == "NONE":
        yield "the image's health check is switched off (NONE)"


@container_rule(
    id="no-restart-policy",
    title="Containers restart after a crash or reboot, within bounds",
    severity="medium",
    cis="5.15",
    fix=(
        'set restart "unless-stopped" '
        f'(or "on-failure" with max_retry_count <= {MAX_RESTART_RETRIES})'
    ),
)
def no_restart_policy(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    policy = c.restart.strip().lower()
    if policy in ("", "no"):
        yield "no restart policy: after a crash or a NAS reboot the service stays down"
    elif policy == "on-failure" and (c.max_retries <= 0 or c.max_retries > MAX_RESTART_RETRIES):
        count = "unlimited" if c.max_retries <= 0 else str(c.max_retries)
        yield f"on-failure with {count} retries: a crash loop never stops"


@container_rule(
    id="no-log-rotation",
    title="Container logs are rotated",
    severity="medium",
    fix='use log_driver "json-file" with log_opts max-size (e.g. "10m") and max-file (e.g. "3")',
)
def no_log_rotation(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    driver = c.log_driver.strip().lower()
    if not driver:
        yield "no log driver set: the daemon's default json-file grows until the disk is full"
    elif driver == "json-file" and not c.log_opts.get("max-size"):
        yield "json-file without max-size grows until the disk is full"
    elif driver == "none":
        yield "logging is off (driver none): nothing to investigate after an incident"
