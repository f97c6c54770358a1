"""nap-dms-platform: read the stack's settings once, then declare the whole platform."""

import pulumi

from components.config import read_project_config
from components.platform import Platform
from components.settings import SettingsError, load_stack

values, secret_keys = read_project_config(pulumi.get_project())
try:
    stack = load_stack(pulumi.get_stack(), values, secret_keys)
except SettingsError as error:
    # RunError: the operator sees our lines, not a Python traceback.
    raise pulumi.RunError(str(error)) from None

platform = Platform("napdms", stack)

pulumi.export("urls", platform.urls)
pulumi.export("grafana_admin_password", platform.admin_password)
pulumi.export(
    "containers",
    {
        name: {host: s.container_names for host, s in by_host.items()}
        for name, by_host in platform.services.items()
    },
)
