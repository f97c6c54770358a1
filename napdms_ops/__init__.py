"""napdms-ops: what Pulumi alone does not do: deploy (`up`), audit a live daemon with the policy
pack's rules (`audit`), list the images a stack runs (`images`), export the settings schema
(`schema`). Backups and blue-green come next."""
