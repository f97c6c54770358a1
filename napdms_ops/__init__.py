"""napdms-ops: what Pulumi alone does not do (schema export now; audit, backups, blue-green next)."""
