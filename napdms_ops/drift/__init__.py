"""Drift: what the stack's daemons run (and what Pulumi's state says) against what the program
declares, each difference classified minor or major."""
