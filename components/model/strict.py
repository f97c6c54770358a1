"""The base of every settings, catalog and plan model."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo never passes silently), instances are immutable, and
    attribute docstrings become the descriptions of the exported JSON Schema."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
