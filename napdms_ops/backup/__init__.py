"""Backups: restic runs orchestrated per data source (see hooks/), restores and drills."""
