"""The two colours of a stateless service and the image each one runs (blue-green deploys).

The program declares both colours of every stateless service, so Pulumi owns every container;
which colour the proxy routes to, and which image each colour runs, are stack config
(`services.<name>.colours`) that the ops CLI changes through the Automation API.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt

from components.model.image import Digest, Tag
from components.model.strict import StrictModel

Colour = Literal["blue", "green"]
"""One of a stateless service's two sets of replicas."""
COLOURS: tuple[Colour, ...] = ("blue", "green")
"""Both colours, in the order they are declared."""

PinnedCounter = Annotated[StrictInt, Field(ge=0, le=1_000_000)]
"""The rotation counter a colour holds a secret at (see `ColourImage.secrets`)."""


class ColourImage(StrictModel):
    """The image one colour runs, an unset key the service's own (`tag`, `digest`); and the
    secrets it still holds at their previous value during a rotation."""

    tag: Tag | None = None
    """A fixed release tag; unset: the service's tag."""
    digest: Digest | None = None
    """The manifest digest that pins the pull; unset: the service's digest, but only while the
    colour runs the service's tag (another tag's image has another digest)."""
    secrets: dict[str, PinnedCounter] = {}
    """Secrets this colour holds at an earlier rotation: `{<secret>: <counter>}`, only ever the
    counter just before the stack's (`secrets.rotation.<secret>` minus one), whose value the
    program keeps. `napdms-ops secrets rotate` pins the live colour so that the new value reaches
    the idle colour alone, switches to it, and removes the pin; unset: the current value."""


class Colours(StrictModel):
    """Which colour is live, and each colour's image."""

    live: Colour = "blue"
    """The colour the proxy routes every request to; the other one is idle (ready for a deploy
    or a rollback), never sharing traffic with it."""
    blue: ColourImage = ColourImage()
    """The image of the blue replicas (`<service>-blue-<n>`)."""
    green: ColourImage = ColourImage()
    """The image of the green replicas (`<service>-green-<n>`)."""

    @property
    def idle(self) -> Colour:
        """The colour that serves no request."""
        return "green" if self.live == "blue" else "blue"

    def image(self, colour: Colour) -> ColourImage:
        """The image settings of `colour`."""
        return self.blue if colour == "blue" else self.green
