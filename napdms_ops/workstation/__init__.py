"""The operator's machine, as every ops command sees it: where the CLI keeps its state, who runs
it from which checkout, how reports are printed, and how the Pulumi CLI is reached. The command
packages (release, trail, drift, status, secrets) share these and import nothing above them."""
