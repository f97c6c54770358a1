"""The platform's data layer: pure pydantic models and names, no Pulumi and no Docker.

Everything above reads these: the catalog (`spec`), the stack settings (`backup`), the Pulumi
components, the ops CLI, and the backup agent, whose image ships `plan` (its input contract) and
nothing else of `components`. Nothing here imports from the layers above; the package imports
no module on its own, so the agent can load `plan` without the rest.
"""
