"""The offsite S3 bucket restic copies into.

boto3 creates it, keeps it versioned, expiring and locked.

`prepare_bucket` is idempotent: it reads the bucket, changes only what differs from the plan, reads
it back and reports what is still wrong (with the fix), so `backup init` can run on every deploy.
`verify_bucket` is the same read without any write.

Why these settings, for a restic repository:

- **Versioning.** A DELETE or an overwrite only hides the current version, so a compromised or
  mistaken client (ransomware on the QNAP holds the keys) cannot destroy the offsite copy.
- **Object lock, GOVERNANCE mode, default retention.** Each object version is protected for
  `object_lock_days` after it is written. restic still works: it deletes its lock files after each
  command and `prune` deletes packs, but in a versioned bucket a DELETE without a version id only
  adds a delete marker; it never touches a locked version, so restic sees the object gone while the
  old version stays recoverable until its retention ends. Removing a *version* (DeleteObject with
  VersionId) is refused while it is locked. GOVERNANCE rather than COMPLIANCE, so an operator
  holding `s3:BypassGovernanceRetention` can still clean up (a wrong retention, a repository that
  must go); COMPLIANCE could not be undone by anyone, not even the account owner.
- **Lifecycle.** Noncurrent versions (replaced or deleted packs, old lock files) expire after
  `noncurrent_days`, incomplete multipart uploads of an interrupted copy are aborted, and delete
  markers left without versions are removed, so the bucket does not grow without bound.

Endpoints that do not implement a feature (S3-compatible NAS targets without object lock or
lifecycle answer NotImplemented / MethodNotAllowed) are recorded as "not supported by this
endpoint" in the report; a real failure (refused keys, no permission, unreachable endpoint) raises
`OffsiteError` naming the bucket, the endpoint, the operation and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from components.model.plan import Offsite, Repository

LOCK_MODE = "GOVERNANCE"
LIFECYCLE_RULE_ID = "napdms-backup-versions"
"""The lifecycle rule this module owns; other rules on the bucket are kept as they are."""
ABORT_MULTIPART_DAYS = 3
"""Days after which the parts of an interrupted multipart upload are discarded."""

MAX_ATTEMPTS = 3
"""Attempts per request (botocore standard retry mode: throttling, 5xx, dropped connections)."""
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60

INIT_COMMAND = "python3 -m napdms_ops backup init --stack <stack>"

_UNSUPPORTED_CODES = frozenset(
    {"NotImplemented", "MethodNotAllowed", "XNotImplemented", "UnsupportedOperation"}
)
_UNSUPPORTED_STATUS = frozenset({405, 501})
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "InvalidSecurity",
        "InvalidClientTokenId",
    }
)
_PERMISSION_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem"})
_REGION_CODES = frozenset(
    {
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
        "301",
    }
)

_IAM_ACTIONS: dict[str, str] = {
    "HeadBucket": "s3:ListBucket",
    "CreateBucket": "s3:CreateBucket",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
}

Versioning = Literal["Enabled", "Suspended", "Disabled", "unsupported", "absent"]
ObjectLock = Literal["enabled", "disabled", "unsupported", "absent"]


class OffsiteError(RuntimeError):
    """The offsite bucket or its keys cannot be used; the message says which and what to change."""


@dataclass(frozen=True)
class BucketReport:
    """What the bucket looks like after `prepare_bucket`, or as `verify_bucket` found it."""

    bucket: str
    endpoint: str
    exists: bool
    created: bool
    """True only when this call created the bucket."""
    versioning: Versioning
    object_lock: ObjectLock
    retention_mode: str | None
    retention_days: int | None
    """Default retention of new object versions (years counted as 365 days); None without one."""
    lifecycle_noncurrent_days: int | None
    """Days after which noncurrent versions expire (the shortest whole-bucket rule).

    None if never.
    """
    problems: list[str] = field(default_factory=list)
    """What does not match the plan, each with its fix. Empty means the bucket is ready."""
    notes: list[str] = field(default_factory=list)
    """Things worth knowing that do not stop the backup (an endpoint without lifecycle, ...)."""
    changes: list[str] = field(default_factory=list)
    """What this call changed; empty on a second `prepare_bucket` and always for `verify_bucket`."""

    @property
    def ok(self) -> bool:
        return not self.problems


# --- credentials ---------------------------------------------------------------------------------


def credentials(repository: Repository) -> tuple[str, str]:
    """The access key id and secret key.

    Read from the files the plan names (whitespace stripped).
    """
    return (
        _read_key_file(repository, "s3_access_key_file", repository.s3_access_key_file),
        _read_key_file(repository, "s3_secret_key_file", repository.s3_secret_key_file),
    )


def restic_env(offsite: Offsite) -> dict[str, str]:
    """The variables restic's s3 backend reads: the two keys and the bucket's region."""
    access_key, secret_key = credentials(offsite.repository)
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": offsite.region,
    }


def _read_key_file(repository: Repository, key: str, path: str | None) -> str:
    fix = (
        "the agent reads the offsite S3 keys from secret files the program writes; "
        "set the keys in the stack (the secret key with "
        "`pulumi config set --secret s3_secret_access_key <key> --stack <stack>`) "
        "and run `pulumi up`"
    )
    if path is None:
        raise OffsiteError(
            f"offsite repository {repository.url}: "
            f"backup plan has no offsite.repository.{key}; {fix}"
        )
    try:
        value = Path(path).read_text().strip()
    except OSError as error:
        raise OffsiteError(
            f"offsite S3 key file {path} ({key}): cannot read it ({error.strerror}); {fix}"
        ) from None
    if not value:
        raise OffsiteError(f"offsite S3 key file {path} ({key}) is empty; {fix}")
    return value


# --- the client ----------------------------------------------------------------------------------


def s3_client(
    offsite: Offsite, access_key: str, secret_key: str, *, max_attempts: int = MAX_ATTEMPTS
) -> Any:
    """A boto3 S3 client for the plan's endpoint.

    Path-style addressing, bounded retries and timeouts. Path style (`https://host/bucket`) works
    on AWS and on every S3-compatible server, including those without wildcard DNS for
    virtual-hosted buckets; restic's `s3:https://host/bucket` uses it too.
    """
    if not access_key or not secret_key:
        raise OffsiteError(
            f"offsite bucket {offsite.bucket} at {offsite.endpoint}: "
            "empty access key or secret key; "
            "read them with `offsite.credentials(plan.offsite.repository)`"
        )
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
    )
    return boto3.client(
        "s3",
        endpoint_url=offsite.endpoint,
        region_name=offsite.region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


class _Unsupported(Exception):
    """The endpoint does not implement the operation."""


def _call(
    offsite: Offsite, method: Callable[..., dict], absent: tuple[str, ...] = (), **kwargs: Any
) -> dict | None:
    """Run one S3 request; None when the error code is one of `absent` (e.g. no lifecycle yet).

    Raises `_Unsupported` for an operation the endpoint does not implement, `OffsiteError`
    otherwise.
    """
    try:
        return method(**kwargs)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in absent:
            return None
        if code in _UNSUPPORTED_CODES or status in _UNSUPPORTED_STATUS:
            raise _Unsupported(error.operation_name) from None
        raise OffsiteError(_describe(offsite, error.operation_name, code, status, error)) from None
    except BotoCoreError as error:
        name = getattr(method, "__name__", "request")
        operation = getattr(getattr(method, "__self__", None), "meta", None)
        operation = (
            operation.method_to_api_mapping.get(name, name) if operation is not None else name
        )
        raise OffsiteError(
            f"offsite bucket {offsite.bucket} at {offsite.endpoint}: {operation} failed: {error}; "
            "check backup.offsite.endpoint (scheme, host, port) "
            "and that this host reaches it (DNS, firewall, proxy)"
        ) from None


def _describe(
    offsite: Offsite, operation: str, code: str, status: int | None, error: ClientError
) -> str:
    message = error.response.get("Error", {}).get("Message") or f"HTTP {status}"
    head = (
        f"offsite bucket {offsite.bucket} at {offsite.endpoint}: "
        f"{operation} failed: {code} ({message})"
    )
    keys = _key_files(offsite.repository)
    if code in _CREDENTIAL_CODES:
        fix = (
            "the endpoint does not accept the keys: "
            f"check the access key id and secret key in {keys}"
        )
    elif code in _REGION_CODES:
        region = (
            error.response.get("ResponseMetadata", {})
            .get("HTTPHeaders", {})
            .get("x-amz-bucket-region")
        )
        where = f"the bucket is in {region}" if region else "the bucket is in another region"
        fix = f"{where}: set backup.offsite.region to the bucket's region (now {offsite.region})"
    elif code in _PERMISSION_CODES:
        action = _IAM_ACTIONS.get(operation, f"s3:{operation}")
        fix = (
            f"the keys were accepted but may not do this: grant {action} "
            f"on arn:aws:s3:::{offsite.bucket} to the user of the keys in {keys}"
        )
    elif code == "403":
        # HEAD answers carry no body: wrong keys and missing permission look alike.
        fix = (
            f"the request was refused: check the keys in {keys}, that their user may s3:ListBucket "
            f"on {offsite.bucket}, and that the bucket name is not owned by another account"
        )
    elif code == "BucketAlreadyExists":
        fix = "another account owns a bucket of that name; choose another backup.offsite.bucket"
    elif code == "InvalidBucketState":
        fix = (
            "the bucket's state does not allow it (e.g. object lock needs versioning Enabled); "
            "fix it in the provider's console and rerun " + INIT_COMMAND
        )
    else:
        fix = "read the endpoint's message; rerun " + INIT_COMMAND + " once it is fixed"
    return f"{head}; {fix}"


def _key_files(repository: Repository) -> str:
    files = [
        path for path in (repository.s3_access_key_file, repository.s3_secret_key_file) if path
    ]
    where = " and ".join(files) if files else "the offsite key files"
    return (
        f"{where} (the stack's offsite S3 keys; the secret one is the s3_secret_access_key secret)"
    )


# --- reading the bucket --------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    exists: bool
    versioning: Versioning = "absent"
    object_lock: ObjectLock = "absent"
    retention_mode: str | None = None
    retention_days: int | None = None
    lifecycle_rules: list[dict] | None = None
    """None when the endpoint does not support lifecycle; [] when the bucket has none."""


def _exists(client: Any, offsite: Offsite) -> bool:
    return (
        _call(
            offsite,
            client.head_bucket,
            absent=("404", "NoSuchBucket", "NotFound"),
            Bucket=offsite.bucket,
        )
        is not None
    )


def _inspect(client: Any, offsite: Offsite) -> _State:
    if not _exists(client, offsite):
        return _State(exists=False)
    bucket = offsite.bucket

    try:
        status = _call(offsite, client.get_bucket_versioning, Bucket=bucket).get("Status")
        versioning: Versioning = status if status in ("Enabled", "Suspended") else "Disabled"
    except _Unsupported:
        versioning = "unsupported"

    mode = days = None
    try:
        lock = _call(
            offsite,
            client.get_object_lock_configuration,
            absent=("ObjectLockConfigurationNotFoundError",),
            Bucket=bucket,
        )
        configuration = (lock or {}).get("ObjectLockConfiguration", {})
        object_lock: ObjectLock = (
            "enabled" if configuration.get("ObjectLockEnabled") == "Enabled" else "disabled"
        )
        retention = configuration.get("Rule", {}).get("DefaultRetention", {})
        if retention:
            mode = retention.get("Mode")
            days = retention.get("Days") or 365 * retention.get("Years", 0) or None
    except _Unsupported:
        object_lock = "unsupported"

    try:
        lifecycle = _call(
            offsite,
            client.get_bucket_lifecycle_configuration,
            absent=("NoSuchLifecycleConfiguration",),
            Bucket=bucket,
        )
        rules: list[dict] | None = (lifecycle or {}).get("Rules", [])
    except _Unsupported:
        rules = None

    return _State(True, versioning, object_lock, mode, days, rules)


def _whole_bucket(rule: dict) -> bool:
    """An enabled rule whose filter selects every object (no prefix, no tags, no size bounds)."""
    if rule.get("Status") != "Enabled":
        return False
    selector = rule.get("Filter", {"Prefix": rule.get("Prefix", "")})
    return all(not value for value in selector.values())


def _lifecycle_summary(rules: list[dict]) -> tuple[int | None, bool, bool]:
    """Noncurrent days (shortest), whether multipart uploads are aborted and delete markers
    removed."""
    effective = [rule for rule in rules if _whole_bucket(rule)]
    noncurrent = [
        rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        for rule in effective
        if rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")
    ]
    aborts = any(
        rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
        for rule in effective
    )
    markers = any(rule.get("Expiration", {}).get("ExpiredObjectDeleteMarker") for rule in effective)
    return (min(noncurrent) if noncurrent else None), aborts, markers


Findings = tuple[list[str], list[str]]
"""Problems (each with its fix) and notes about a bucket."""


def _judge(offsite: Offsite, state: _State) -> Findings:
    """The problems and notes for a bucket in `state`, measured against the plan."""
    if not state.exists:
        where = f"{offsite.bucket} does not exist at {offsite.endpoint}"
        return [f"bucket {where}; create it with {INIT_COMMAND}"], []
    problems: list[str] = []
    notes: list[str] = []
    for check in (_versioning, _object_lock, _lifecycle):
        found_problems, found_notes = check(offsite, state)
        problems += found_problems
        notes += found_notes
    return problems, notes


def _versioning(offsite: Offsite, state: _State) -> Findings:
    bucket, endpoint = offsite.bucket, offsite.endpoint
    problems: list[str] = []
    if state.versioning == "unsupported":
        problems.append(
            "versioning: not supported by this endpoint, "
            "so a DELETE from a compromised host destroys the offsite copy; "
            "use an endpoint with S3 versioning for backup.offsite.endpoint"
        )
    elif state.versioning != "Enabled":
        problems.append(
            f"versioning is {state.versioning} on {bucket}, "
            "so a DELETE or overwrite destroys data for good; "
            f"enable it with {INIT_COMMAND} (or `aws s3api put-bucket-versioning --bucket {bucket} "
            f"--versioning-configuration Status=Enabled --endpoint-url {endpoint}`)"
        )
    return problems, []


def _object_lock(offsite: Offsite, state: _State) -> Findings:
    bucket = offsite.bucket
    problems: list[str] = []
    notes: list[str] = []
    wanted = offsite.object_lock_days
    if wanted > 0:
        if state.object_lock == "unsupported":
            problems.append(
                "object lock: not supported by this endpoint, "
                f"but backup.offsite.object_lock_days is {wanted}; "
                "use an endpoint with S3 object lock, "
                "or set object_lock_days: 0 to accept a bucket without it"
            )
        elif state.object_lock != "enabled":
            problems.append(
                f"object lock is not enabled on the existing bucket {bucket}, "
                f"but backup.offsite.object_lock_days is {wanted}; "
                "many providers turn it on only when a bucket is created: "
                "create a new bucket (set backup.offsite.bucket "
                f"to an unused name and run {INIT_COMMAND}) and copy the repository over, "
                "or on AWS enable it in place with "
                f"`aws s3api put-object-lock-configuration --bucket {bucket} "
                "--object-lock-configuration ObjectLockEnabled=Enabled` "
                "(irreversible, so this tool does not do it for you), "
                "or set object_lock_days: 0 to accept the bucket without it"
            )
        elif state.retention_mode != LOCK_MODE or state.retention_days != wanted:
            found = (
                f"{state.retention_mode} {state.retention_days} days"
                if state.retention_mode
                else "none"
            )
            problems.append(
                f"object lock default retention is {found}, "
                f"the plan wants {LOCK_MODE} {wanted} days; set it with {INIT_COMMAND}"
            )
    elif state.object_lock == "enabled" and state.retention_mode:
        notes.append(
            f"object_lock_days is 0 but {bucket} locks new versions "
            f"for {state.retention_days} days ({state.retention_mode}); "
            "object lock cannot be turned off on a bucket, "
            "remove its default retention in the provider's console if unwanted"
        )
    return problems, notes


def _lifecycle(offsite: Offsite, state: _State) -> Findings:
    problems: list[str] = []
    notes: list[str] = []
    if state.lifecycle_rules is None:
        notes.append(
            "lifecycle: not supported by this endpoint; noncurrent versions never expire, "
            "so pruned packs keep using space; "
            "expire old versions with the endpoint's own tools"
        )
    else:
        noncurrent, aborts, markers = _lifecycle_summary(state.lifecycle_rules)
        fix = f"put the {LIFECYCLE_RULE_ID} lifecycle rule with {INIT_COMMAND}"
        if noncurrent != offsite.noncurrent_days:
            found = f"expire after {noncurrent} days" if noncurrent else "never expire"
            problems.append(
                f"lifecycle: noncurrent versions {found}, "
                f"the plan says after {offsite.noncurrent_days} days; {fix}"
            )
        if not aborts:
            problems.append(f"lifecycle: incomplete multipart uploads are never aborted; {fix}")
        if not markers:
            problems.append(f"lifecycle: expired delete markers are never removed; {fix}")
    return problems, notes


def _report(
    offsite: Offsite, state: _State, created: bool = False, changes: list[str] | None = None
) -> BucketReport:
    problems, notes = _judge(offsite, state)
    noncurrent = _lifecycle_summary(state.lifecycle_rules)[0] if state.lifecycle_rules else None
    return BucketReport(
        bucket=offsite.bucket,
        endpoint=offsite.endpoint,
        exists=state.exists,
        created=created,
        versioning=state.versioning,
        object_lock=state.object_lock,
        retention_mode=state.retention_mode,
        retention_days=state.retention_days,
        lifecycle_noncurrent_days=noncurrent,
        problems=problems,
        notes=notes,
        changes=changes or [],
    )


def verify_bucket(
    offsite: Offsite, access_key: str, secret_key: str, client: Any = None
) -> BucketReport:
    """Read-only: does the bucket exist, versioned, locked and expiring as the plan says?"""
    client = client or s3_client(offsite, access_key, secret_key)
    return _report(offsite, _inspect(client, offsite))


# --- preparing the bucket ------------------------------------------------------------------------


def prepare_bucket(
    offsite: Offsite, access_key: str, secret_key: str, client: Any = None
) -> BucketReport:
    """Create the bucket if missing and bring versioning, object lock and lifecycle to the plan.

    Changes only what differs, so a second call changes nothing. Whatever it cannot fix (object lock
    on an existing bucket, a feature the endpoint lacks) comes back in `problems` with the fix.
    """
    client = client or s3_client(offsite, access_key, secret_key)
    bucket = offsite.bucket
    changes: list[str] = []
    created = False

    state = _inspect(client, offsite)
    if not state.exists:
        _create(client, offsite, changes)
        created = True
        state = _inspect(client, offsite)

    if state.versioning in ("Disabled", "Suspended"):
        try:
            _call(
                offsite,
                client.put_bucket_versioning,
                Bucket=bucket,
                VersioningConfiguration={"Status": "Enabled"},
            )
            changes.append("versioning enabled")
        except _Unsupported:
            pass  # the read-back still shows it off, reported as a problem

    wanted = offsite.object_lock_days
    if (
        wanted > 0
        and state.object_lock == "enabled"
        and (state.retention_mode != LOCK_MODE or state.retention_days != wanted)
    ):
        # Default retention of new versions only; versions already written keep their own retention.
        try:
            _call(
                offsite,
                client.put_object_lock_configuration,
                Bucket=bucket,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": LOCK_MODE, "Days": wanted}},
                },
            )
            changes.append(f"object lock default retention set to {LOCK_MODE} {wanted} days")
        except _Unsupported:
            pass  # reported from the read-back: retention differs from the plan

    if state.lifecycle_rules is not None:
        rules = _merged_rules(state.lifecycle_rules, offsite.noncurrent_days)
        if rules != state.lifecycle_rules:
            try:
                _call(
                    offsite,
                    client.put_bucket_lifecycle_configuration,
                    Bucket=bucket,
                    LifecycleConfiguration={"Rules": rules},
                )
                changes.append(
                    f"lifecycle rule {LIFECYCLE_RULE_ID} set "
                    f"(noncurrent versions expire after {offsite.noncurrent_days} days)"
                )
            except _Unsupported:
                pass  # the read-back says lifecycle is unsupported, or still shows the old rules

    final = _inspect(client, offsite) if changes else state
    return _report(offsite, final, created=created, changes=changes)


def _create(client: Any, offsite: Offsite, changes: list[str]) -> None:
    arguments: dict[str, Any] = {"Bucket": offsite.bucket}
    # us-east-1 is S3's default location and refuses an explicit LocationConstraint; every other
    # region must be named, or AWS creates the bucket in us-east-1 (or refuses the request).
    if offsite.region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": offsite.region}
    if offsite.object_lock_days > 0:
        # Object lock can only be switched on at creation on many providers (it also turns on
        # versioning).
        try:
            _call(
                offsite,
                client.create_bucket,
                absent=("BucketAlreadyOwnedByYou",),
                ObjectLockEnabledForBucket=True,
                **arguments,
            )
            changes.append("bucket created with object lock")
            return
        except _Unsupported:
            # An endpoint without object lock: create the bucket anyway, the read-back reports
            # the lock as unsupported.
            pass
    _call(offsite, client.create_bucket, absent=("BucketAlreadyOwnedByYou",), **arguments)
    changes.append("bucket created")


def _merged_rules(existing: list[dict], noncurrent_days: int) -> list[dict]:
    """The bucket's lifecycle rules with ours replaced or added; other rules untouched, in order."""
    ours = {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": ""},
        "Status": "Enabled",
        "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    }
    current = next((rule for rule in existing if rule.get("ID") == LIFECYCLE_RULE_ID), None)
    if current is not None and _same_rule(current, ours):
        return existing
    others = [rule for rule in existing if rule.get("ID") != LIFECYCLE_RULE_ID]
    return others + [ours]


def _same_rule(found: dict, wanted: dict) -> bool:
    """Equal up to how an endpoint echoes an empty filter ({}, {"Prefix": ""} or a legacy
    Prefix)."""
    keys = ("Status", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload", "Expiration")
    return _whole_bucket(found) and all(found.get(key) == wanted.get(key) for key in keys)
