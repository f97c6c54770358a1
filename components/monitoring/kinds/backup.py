"""The backup agent: a backup missing or failed, the repository check or the offsite copy failed,
the WAL archive behind (point-in-time recovery's recovery point)."""

from __future__ import annotations

from components.model.context import CatalogContext
from components.monitoring.alert import Alert

MISSING_H = 26
"""A daily run may be late by two hours before its absence pages."""
WAL_AGE_S = 600
"""The WAL archive ships every minute; ten minutes behind means it stopped (RPO 5 min)."""


def alerts(context: CatalogContext, services: list[str]) -> list[Alert]:
    """Alerts from the agent's own metrics (`napdms_ops/backup/metrics.py`, `wal.py`)."""
    late = f"{MISSING_H} * 3600"
    return [
        Alert(
            "BackupMissing",
            f"time() - napdms_backup_last_success_timestamp_seconds > {late}",
            "critical",
            "no complete backup for {{ $value | humanizeDuration }}",
            "napdms-ops backup status; then napdms-ops backup run --stack <stack>",
        ),
        Alert(
            "BackupNeverSucceeded",
            "absent(napdms_backup_last_success_timestamp_seconds)",
            "critical",
            "the backup agent has reported no successful backup since it started",
            "napdms-ops backup run --stack <stack>, and read the agent's log",
            for_=f"{MISSING_H}h",
        ),
        Alert(
            "BackupFailed",
            "napdms_backup_last_run_success == 0",
            "critical",
            "the last backup run failed",
            "napdms-ops backup status names the reason; fix it and run it again",
        ),
        Alert(
            "BackupFailedReason",
            "napdms_backup_failure == 1",
            "critical",
            "the last backup run failed: {{ $labels.reason }}",
            "network: the ASUSTOR link; disk-full: the repository's disk; wrong-password: "
            "restic-password rotation",
        ),
        Alert(
            "BackupServiceFailed",
            "napdms_backup_service_success == 0",
            "critical",
            "{{ $labels.service }} was not backed up by the last run",
            "read the agent's log for that service's dump; check the service is healthy",
        ),
        Alert(
            "BackupCheckFailed",
            "napdms_backup_check_success == 0",
            "critical",
            "restic check found errors in the repository",
            "napdms-ops backup check --stack <stack> --read-all; restore from offsite if needed",
        ),
        Alert(
            "BackupOffsiteFailed",
            "napdms_backup_offsite_success == 0",
            "critical",
            "the last run was not copied offsite",
            "check the S3 endpoint and keys (s3_access_key_id, s3_secret_access_key)",
        ),
        Alert(
            "BackupManifestUnreadable",
            "napdms_backup_manifest_unreadable > 0",
            "warning",
            "{{ $value }} run manifests in the repository cannot be read",
            "napdms-ops backup check --stack <stack>",
        ),
        Alert(
            "WalArchiveBehind",
            f"napdms_backup_wal_archive_age_seconds > {WAL_AGE_S}",
            "critical",
            "{{ $labels.service }}'s WAL reached the repository "
            "{{ $value | humanizeDuration }} ago",
            "read the agent's log (pg_receivewal, shipments); the recovery point grows meanwhile",
            for_="1m",
        ),
        Alert(
            "WalArchiveFailing",
            "increase(napdms_backup_wal_archive_failures_total[15m]) > 0",
            "warning",
            "shipments of {{ $labels.service }}'s WAL fail",
            "check the repository is reachable from the agent",
        ),
        Alert(
            "WalReceiverDown",
            "napdms_backup_wal_receiver_up == 0",
            "warning",
            "pg_receivewal for {{ $labels.service }} is not running",
            "check PostgreSQL accepts the agent's replication connection (pg_hba, the slot)",
            for_="2m",
        ),
        Alert(
            "WalGap",
            "increase(napdms_backup_wal_gaps_total[1h]) > 0",
            "critical",
            "{{ $labels.service }} dropped WAL before the agent had it: "
            "no point-in-time recovery until the next base backup",
            "napdms-ops backup run --stack <stack> takes a new base now",
        ),
        Alert(
            "BaseBackupMissing",
            f"time() - napdms_backup_pg_base_last_timestamp_seconds > {late}",
            "warning",
            "{{ $labels.service }}'s last base backup is {{ $value | humanizeDuration }} old",
            "the nightly run takes it: see BackupMissing and the agent's log",
        ),
        Alert(
            "RestorePointFailing",
            "increase(napdms_backup_pg_restore_point_failures_total[1d]) > 0",
            "warning",
            "restore points of {{ $labels.service }} fail (the drill's targets)",
            "read the agent's log: lock timeouts mean long transactions at that moment",
        ),
    ]
