"""Image references as registries spell them: repositories, fixed tags and manifest digests.

Their own module so both a catalog entry (`spec`) and a colour's image (`release`) read one
grammar.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

# The OCI distribution spec's grammar (github.com/distribution/reference).
_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = rf"{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*(?::[0-9]+)?"
_REPOSITORY = rf"(?:{_DOMAIN}|{_PATH_COMPONENT})(?:/{_PATH_COMPONENT})+"


def check_fixed_tag(value: str) -> str:
    """Reject tags that are no OCI tag or that float (`latest`), so a redeploy never changes the
    image silently."""
    if not re.fullmatch(_TAG, value):
        raise ValueError(
            f"{_quoted(value)} is not an image tag; use up to 128 letters, digits, "
            '"_", "." and "-", not starting with "." or "-", e.g. "16.4"'
        )
    if value == "latest" or value.endswith("-latest"):
        raise ValueError(f'"{value}" floats; use a released version such as "16.4"')
    return value


def check_digest(value: str) -> str:
    """A manifest digest as registries print it."""
    if not re.fullmatch(_DIGEST, value):
        raise ValueError(
            f"{_quoted(value)} is not an image digest; use sha256: and 64 lower-case hex digits, "
            "as `docker buildx imagetools inspect <image>:<tag>` prints it"
        )
    return value


def check_repository(value: str) -> str:
    """A repository as pulled: lower-case path components below a registry, no tag or digest.
    The first part counts as a registry only when Docker would read it as one (a `.` or `:`,
    or `localhost`)."""
    first = value.split("/", 1)[0]
    is_domain = "." in first or ":" in first or first == "localhost"
    if (
        len(value) > 255
        or not re.fullmatch(_REPOSITORY, value)
        or not (is_domain or re.fullmatch(_PATH_COMPONENT, first))
    ):
        raise ValueError(
            f"{_quoted(value)} is not an image repository; use lower-case names such as "
            '"docker.io/library/postgres", without tag or digest (they are keys of their own)'
        )
    return value


def _quoted(value: str) -> str:
    return json.dumps(value if len(value) <= 80 else value[:72] + "...(cut)")


def _digits_as_text(value: object) -> object:
    """A whole-number tag (`17`) as its text: `pulumi config set --path` (and so a deploy
    through the Automation API) stores a value of digits only as a YAML number."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return value


Tag = Annotated[
    str,
    BeforeValidator(_digits_as_text),
    AfterValidator(check_fixed_tag),
    WithJsonSchema({"type": "string", "pattern": f"^{_TAG}$"}),
]
"""An image tag that names one release."""
Digest = Annotated[
    str, AfterValidator(check_digest), WithJsonSchema({"type": "string", "pattern": f"^{_DIGEST}$"})
]
"""A manifest digest, `sha256:` and 64 hex digits."""
ImageRepository = Annotated[
    str,
    AfterValidator(check_repository),
    WithJsonSchema({"type": "string", "pattern": f"^{_REPOSITORY}$"}),
]
"""A repository as pulled (`registry/owner/name`), without tag or digest."""
