"""PostgreSQL: the relational store of NAP-DMS, Gitea and n8n (one role and database each)."""

from components.model.spec import (
    BackupHook,
    BackupPolicy,
    HealthCheck,
    SecretUse,
    ServiceSpec,
    VolumeMount,
)

# Executed once by the image's entrypoint on first start (an empty data directory). Each
# `<app>-db-password` secret file becomes a login role and a database of the same name, so
# adding an application that needs a database is one more secret in its catalog entry.
# psql reads each password itself (`\set` from a backquoted `cat` of the file): only the file's
# path is on a command line, so `ps` never shows a password during the first start.
_APP_ROLES = """#!/bin/sh
set -eu
for file in /run/secrets/*-db-password; do
  [ -e "$file" ] || continue
  app=$(basename "$file" -db-password)
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \\
    --set app="$app" --set file="$file" <<'SQL'
\\set password `cat :'file'`
CREATE ROLE :"app" LOGIN PASSWORD :'password';
CREATE DATABASE :"app" OWNER :"app";
SQL
done
"""

SPEC = ServiceSpec(
    name="postgres",
    description="PostgreSQL 17, official Debian image",
    image="docker.io/library/postgres",
    tag="17.6-bookworm",
    user="999:999",
    env={"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres-password"},
    volumes=[
        VolumeMount(
            name="data", path="/var/lib/postgresql/data", backup=BackupPolicy(policy="daily")
        )
    ],
    tmpfs=["/var/run/postgresql", "/tmp"],
    secrets=[
        SecretUse(secret="postgres-password"),
        SecretUse(secret="napdms-db-password"),
        SecretUse(secret="gitea-db-password"),
        SecretUse(secret="n8n-db-password"),
    ],
    config_dir="/docker-entrypoint-initdb.d",
    networks=["data"],
    health=HealthCheck(test=["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "postgres"]),
    memory="2g",
    cpus=2,
    # SIGTERM is a smart shutdown: give open sessions time before Docker kills it.
    stop_grace_s=60,
    # The superuser, so the dump includes the roles and every application's database.
    backup_hook=BackupHook(
        kind="postgresql", port=5432, user="postgres", password_secret="postgres-password"
    ),
)


def files(context) -> dict[str, str]:
    """The first-start script that creates the application roles."""
    return {"10-app-roles.sh": _APP_ROLES}
