"""`napdms-ops images`: every image a stack pulls from a registry, as the program would pull it.

The list is the stack's resolved catalog (`components.settings.Stack.services`: overrides merged,
disabled services left out), each as `ServiceSpec.image_ref` (`repo:tag`, plus `@digest` when
pinned; a blue-green service's two colours as `colour_image_ref`), and the init containers'
busybox image (`components.hosts.INIT_IMAGE`). Images built from this repository at `pulumi up`
(the backup agent, `napdms_ops/backup/Dockerfile`) are left out: no registry holds them, so there
is nothing to pull or scan by reference (their base, the stack's PostgreSQL image, is in the
list). It is read straight from `Pulumi.<stack>.yaml` and resolved by
the program's own `load_stack`, so it needs neither the Pulumi CLI nor the stack's passphrase;
CI feeds it to an image scanner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from components.hosts import INIT_IMAGE
from components.model.release import COLOURS
from components.model.spec import ServiceSpec
from components.settings import STACKS, load_stack, read_stack_file


def stack_images(
    stack: str, values: Mapping[str, Any] | None = None, secret_keys: set[str] | None = None
) -> list[str]:
    """Sorted, unique references of the images `stack` pulls; `values` (and `secret_keys`) replace
    the stack file's config. Raises `SettingsError` when the config would not deploy."""
    if values is None:
        values, found = read_stack_file(stack)
        secret_keys = found if secret_keys is None else secret_keys
    resolved = load_stack(stack, values, set(secret_keys or ()))
    pulled = [spec for spec in resolved.services.values() if spec.build is None]
    refs = {ref for spec in pulled for ref in _pulled(spec)}
    return sorted(refs | {INIT_IMAGE})


def _pulled(spec: ServiceSpec) -> list[str]:
    """What the program pulls for `spec`: each colour's image of a blue-green service."""
    if spec.colours is None:
        return [spec.image_ref]
    return [spec.colour_image_ref(colour) for colour in COLOURS]


def images(stacks: Iterable[str] = STACKS) -> list[str]:
    """Sorted, unique image references across `stacks` (all three by default)."""
    return sorted({ref for stack in stacks for ref in stack_images(stack)})
