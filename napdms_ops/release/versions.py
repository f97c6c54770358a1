"""Image versions as `--image` and the stack config name them, checked with the catalog's own
grammar; what a deploy refuses outright (a floating tag, an unpinned image where images are
pinned, a PostgreSQL major upgrade)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.model.image import check_digest, check_fixed_tag
from components.settings import Stack

PINNED_ENVIRONMENTS = ("staging", "prod")
"""Where every image is pinned by digest, so a deploy names one."""


class ReleaseError(Exception):
    """The command cannot run as asked; the message names stack, service and the fix."""


@dataclass(frozen=True)
class Version:
    """An image version as `--image` and the stack config name it: a tag and maybe a digest."""

    tag: str
    digest: str | None = None

    def __str__(self) -> str:
        return f"{self.tag}@{self.digest}" if self.digest else self.tag

    @classmethod
    def of_ref(cls, ref: str, repository: str) -> Version:
        """The version in `repository:tag[@digest]` (`ServiceSpec.image_ref`)."""
        tag, _, digest = ref.removeprefix(f"{repository}:").partition("@")
        return cls(tag, digest or None)


def parse_image(stack: Stack, service: str, text: str, current: Version) -> Version:
    """`--image` as a version (`TAG`, `sha256:<hex>` keeping the current tag, or
    `TAG@sha256:<hex>`); raises `ReleaseError` naming stack, service and the fix."""
    tag, _, digest = text.partition("@") if "@" in text else (text, "", "")
    if text.startswith("sha256:"):
        tag, digest = current.tag, text
    where = f"{stack.name}: {service}: --image {text!r}"
    try:
        check_fixed_tag(tag)
        if digest:
            check_digest(digest)
    except ValueError as error:
        raise ReleaseError(
            f"{where}: {error}; give TAG, sha256:<64 hex> or TAG@sha256:<64 hex>"
        ) from None
    spec = stack.services[service]
    if spec.backup_hook is not None and spec.backup_hook.kind == "postgresql":
        old, new = _major(current.tag), _major(tag)
        if old != new:
            raise ReleaseError(
                f"{where}: PostgreSQL {old} -> {new} is a major upgrade, and a server does not "
                "start on another major version's data directory; follow the README's "
                '"Major PostgreSQL upgrade" (dump, new volume, restore), not a plain deploy'
            )
    if not digest and stack.settings.environment in PINNED_ENVIRONMENTS:
        raise ReleaseError(
            f"{where}: {stack.name} pins images by digest; give {tag}@sha256:<digest>, e.g. from "
            f"`docker buildx imagetools inspect {stack.services[service].image}:{tag}`"
        )
    return Version(tag, digest or None)


def _major(tag: str) -> str:
    """The major version a PostgreSQL image tag names (`17.6-bookworm` -> `17`)."""
    return re.split(r"[.-]", tag, maxsplit=1)[0]


def version_of(text: str) -> Version:
    """A version as the audit trail records it (`TAG` or `TAG@sha256:...`)."""
    tag, _, digest = text.partition("@")
    return Version(tag, digest or None)
