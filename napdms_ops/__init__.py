"""napdms-ops: what Pulumi alone does not do: deploy (`up`), audit a live daemon with the policy
pack's rules (`audit`), list the images a stack runs (`images`), export the settings schema
(`schema`), run and restore backups (`backup`, `restore`, `drill`). `napdms_ops.backup` is the
backup agent, which runs in its own container and imports none of the CLI."""
