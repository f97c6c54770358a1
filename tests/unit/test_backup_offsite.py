"""The offsite bucket: prepared and verified with boto3 against a real S3 HTTP server (moto,
server mode).

moto accepts any keys unless told otherwise; the server fixture creates an IAM user and then turns
signature and policy checks on (`/moto-api/reset-auth 0`), so wrong keys are refused as on AWS.
"""

from __future__ import annotations

import json
import socket
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from components.model.plan import Offsite, Repository
from napdms_ops.backup import offsite as offsite_module
from napdms_ops.backup.offsite import (
    OffsiteError,
    credentials,
    prepare_bucket,
    restic_env,
    s3_client,
    verify_bucket,
)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    reader_key: str
    """A user that may only list and read buckets."""
    reader_secret: str


def _moto_api(endpoint: str, path: str, body: bytes) -> None:
    # text/plain: with urllib's default form content type the server would parse the body away
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}",
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def _iam_user(iam: Any, name: str, actions: list[str]) -> tuple[str, str]:
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    }
    iam.put_user_policy(
        UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy)
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="module")
def s3_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    access_key, secret_key = _iam_user(iam, "backup", ["*"])
    # moto authorises HEAD bucket as "s3:HeadBucket" (AWS checks s3:ListBucket for it): allow both
    reader_key, reader_secret = _iam_user(
        iam, "reader", ["s3:ListBucket", "s3:HeadBucket", "s3:Get*"]
    )
    _moto_api(
        endpoint, "reset-auth", b"0"
    )  # from now on every request must be signed by a known key and allowed
    try:
        yield S3Server(endpoint, access_key, secret_key, reader_key, reader_secret)
    finally:
        _moto_api(
            endpoint, "reset-auth", b"inf"
        )  # moto's settings are process-wide: leave them as found
        _moto_api(endpoint, "reset", b"")
        server.stop()


@pytest.fixture
def key_files(tmp_path: Path, s3_server: S3Server) -> tuple[Path, Path]:
    access, secret = tmp_path / "s3-access-key", tmp_path / "s3-secret-key"
    access.write_text(f"{s3_server.access_key}\n")
    secret.write_text(f"  {s3_server.secret_key}\n")
    return access, secret


def _offsite(s3_server: S3Server, key_files: tuple[Path, Path], **overrides: Any) -> Offsite:
    bucket = overrides.pop("bucket", f"napdms-test-{uuid.uuid4().hex[:12]}")
    repository = Repository(
        url=f"s3:{s3_server.endpoint}/{bucket}/restic",
        password_file="/run/secrets/restic-password",
        s3_access_key_file=str(key_files[0]),
        s3_secret_key_file=str(key_files[1]),
    )
    return Offsite(repository=repository, endpoint=s3_server.endpoint, bucket=bucket, **overrides)


@pytest.fixture
def make_offsite(s3_server: S3Server, key_files: tuple[Path, Path]) -> Callable[..., Offsite]:
    """An offsite section for a bucket name no other test uses."""
    return lambda **overrides: _offsite(s3_server, key_files, **overrides)


@pytest.fixture
def admin(s3_server: S3Server, make_offsite) -> Any:
    """A plain boto3 client with the backup user's keys, to look at or set up buckets directly."""
    return s3_client(make_offsite(), s3_server.access_key, s3_server.secret_key)


def _prepare(s3_server: S3Server, offsite: Offsite, **kwargs: Any):
    return prepare_bucket(offsite, s3_server.access_key, s3_server.secret_key, **kwargs)


class _EndpointWithout:
    """A real client whose endpoint answers 501 NotImplemented to some requests, like a NAS S3
    service."""

    def __init__(self, client: Any, refused: dict[str, Callable[[dict], bool]]):
        self._client = client
        self._refused = refused

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in self._refused:
            return method
        refuses = self._refused[name]

        def call(**kwargs: Any) -> Any:
            if refuses(kwargs):
                error = {
                    "Error": {"Code": "NotImplemented", "Message": "not implemented"},
                    "ResponseMetadata": {"HTTPStatusCode": 501},
                }
                raise ClientError(error, self._client.meta.method_to_api_mapping[name])
            return method(**kwargs)

        return call


# --- preparing -----------------------------------------------------------------------------------


def test_a_fresh_bucket_is_created_with_versioning_lifecycle_and_object_lock_retention(
    s3_server, make_offsite, admin
):
    offsite = make_offsite(object_lock_days=7, noncurrent_days=45)

    report = _prepare(s3_server, offsite)

    assert report.ok, report.problems
    assert (report.created, report.versioning, report.object_lock) == (True, "Enabled", "enabled")
    assert (report.retention_mode, report.retention_days, report.lifecycle_noncurrent_days) == (
        "GOVERNANCE",
        7,
        45,
    )
    retention = admin.get_object_lock_configuration(Bucket=offsite.bucket)[
        "ObjectLockConfiguration"
    ]["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("GOVERNANCE", 7)
    [rule] = admin.get_bucket_lifecycle_configuration(Bucket=offsite.bucket)["Rules"]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 45}
    assert rule["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": offsite_module.ABORT_MULTIPART_DAYS
    }
    assert rule["Expiration"] == {"ExpiredObjectDeleteMarker": True}


def test_preparing_twice_changes_nothing_and_reports_created_false(s3_server, make_offsite):
    offsite = make_offsite()
    first = _prepare(s3_server, offsite)

    second = _prepare(s3_server, offsite)

    assert first.created and first.changes
    assert (second.created, second.changes, second.problems) == (False, [], [])
    assert (
        second.versioning,
        second.object_lock,
        second.retention_days,
        second.lifecycle_noncurrent_days,
    ) == (
        "Enabled",
        "enabled",
        30,
        90,
    )


def test_a_bucket_outside_us_east_1_is_created_in_its_region(s3_server, make_offsite, admin):
    offsite = make_offsite(region="eu-central-1")

    assert _prepare(s3_server, offsite).ok

    assert admin.get_bucket_location(Bucket=offsite.bucket)["LocationConstraint"] == "eu-central-1"


def test_object_lock_days_zero_creates_a_bucket_without_object_lock(s3_server, make_offsite, admin):
    offsite = make_offsite(object_lock_days=0)

    report = _prepare(s3_server, offsite)

    assert report.ok, report.problems
    assert (report.object_lock, report.versioning, report.retention_days) == (
        "disabled",
        "Enabled",
        None,
    )
    with pytest.raises(ClientError, match="ObjectLockConfigurationNotFoundError"):
        admin.get_object_lock_configuration(Bucket=offsite.bucket)


def test_an_existing_bucket_without_object_lock_is_reported_when_object_lock_is_wanted(
    s3_server, make_offsite, admin
):
    offsite = make_offsite(object_lock_days=30)
    admin.create_bucket(Bucket=offsite.bucket)

    report = _prepare(s3_server, offsite)

    assert not report.ok
    assert (report.created, report.object_lock) == (False, "disabled")
    [problem] = report.problems
    assert "object lock is not enabled" in problem and offsite.bucket in problem
    assert "object_lock_days: 0" in problem and "new bucket" in problem
    assert report.versioning == "Enabled"  # what can be fixed in place still is


def test_a_changed_noncurrent_days_is_brought_to_the_plan_and_other_lifecycle_rules_are_kept(
    s3_server, make_offsite, admin
):
    offsite = make_offsite(object_lock_days=0, noncurrent_days=90)
    _prepare(s3_server, offsite)
    foreign = {
        "ID": "operator-tmp",
        "Filter": {"Prefix": "tmp/"},
        "Status": "Enabled",
        "Expiration": {"Days": 1},
    }
    ours = admin.get_bucket_lifecycle_configuration(Bucket=offsite.bucket)["Rules"]
    admin.put_bucket_lifecycle_configuration(
        Bucket=offsite.bucket, LifecycleConfiguration={"Rules": [foreign, *ours]}
    )

    report = _prepare(s3_server, offsite.model_copy(update={"noncurrent_days": 14}))

    assert report.ok and report.lifecycle_noncurrent_days == 14
    rules = {
        rule["ID"]: rule
        for rule in admin.get_bucket_lifecycle_configuration(Bucket=offsite.bucket)["Rules"]
    }
    assert rules.keys() == {"operator-tmp", offsite_module.LIFECYCLE_RULE_ID}
    assert rules[offsite_module.LIFECYCLE_RULE_ID]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 14
    }


def test_an_endpoint_without_lifecycle_is_noted_as_not_supported_rather_than_crashing(
    s3_server, make_offsite, admin
):
    offsite = make_offsite()
    nas = _EndpointWithout(
        admin,
        {
            name: lambda _: True
            for name in ("get_bucket_lifecycle_configuration", "put_bucket_lifecycle_configuration")
        },
    )

    report = _prepare(s3_server, offsite, client=nas)

    assert report.ok, report.problems
    assert report.lifecycle_noncurrent_days is None
    assert any("lifecycle: not supported by this endpoint" in note for note in report.notes)


def test_an_endpoint_without_object_lock_gets_the_bucket_and_a_problem_with_the_fix(
    s3_server, make_offsite, admin
):
    offsite = make_offsite(object_lock_days=30)
    nas = _EndpointWithout(
        admin,
        {
            "create_bucket": lambda kwargs: bool(kwargs.get("ObjectLockEnabledForBucket")),
            "get_object_lock_configuration": lambda _: True,
        },
    )

    report = _prepare(s3_server, offsite, client=nas)

    assert (report.created, report.versioning, report.object_lock) == (
        True,
        "Enabled",
        "unsupported",
    )
    [problem] = report.problems
    assert (
        "object lock: not supported by this endpoint" in problem
        and "object_lock_days: 0" in problem
    )


# --- verifying -----------------------------------------------------------------------------------


def test_verify_reports_a_bucket_without_versioning_as_a_problem_with_the_fix(
    s3_server, make_offsite, admin
):
    offsite = make_offsite(object_lock_days=0)
    admin.create_bucket(Bucket=offsite.bucket)

    report = verify_bucket(offsite, s3_server.access_key, s3_server.secret_key)

    assert report.versioning == "Disabled"
    [problem] = [problem for problem in report.problems if problem.startswith("versioning")]
    assert "put-bucket-versioning" in problem and "backup init" in problem
    assert "Status" not in admin.get_bucket_versioning(
        Bucket=offsite.bucket
    )  # verify wrote nothing


def test_verify_of_a_prepared_bucket_finds_no_problem(s3_server, make_offsite):
    offsite = make_offsite()
    _prepare(s3_server, offsite)

    report = verify_bucket(offsite, s3_server.access_key, s3_server.secret_key)

    assert (report.ok, report.created, report.changes) == (True, False, [])


def test_verify_of_a_missing_bucket_says_how_to_create_it_and_creates_nothing(
    s3_server, make_offsite, admin
):
    offsite = make_offsite()

    report = verify_bucket(offsite, s3_server.access_key, s3_server.secret_key)

    assert (
        not report.exists
        and "does not exist" in report.problems[0]
        and "backup init" in report.problems[0]
    )
    assert offsite.bucket not in [bucket["Name"] for bucket in admin.list_buckets()["Buckets"]]


# --- what restic relies on -----------------------------------------------------------------------


def test_a_locked_version_cannot_be_deleted_while_a_plain_delete_only_adds_a_delete_marker(
    s3_server, make_offsite, admin
):
    offsite = make_offsite(object_lock_days=1)
    _prepare(s3_server, offsite)
    version = admin.put_object(Bucket=offsite.bucket, Key="restic/locks/0a1b", Body=b"lock")[
        "VersionId"
    ]

    marker = admin.delete_object(
        Bucket=offsite.bucket, Key="restic/locks/0a1b"
    )  # what restic does with its lock files

    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as refused:
        admin.delete_object(Bucket=offsite.bucket, Key="restic/locks/0a1b", VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    kept = admin.get_object(Bucket=offsite.bucket, Key="restic/locks/0a1b", VersionId=version)
    assert kept["Body"].read() == b"lock" and kept["ObjectLockMode"] == "GOVERNANCE"


# --- real errors ---------------------------------------------------------------------------------


def test_wrong_credentials_raise_an_offsite_error_naming_bucket_endpoint_operation_and_fix(
    s3_server, make_offsite, key_files
):
    offsite = make_offsite()

    with pytest.raises(OffsiteError) as error:
        prepare_bucket(offsite, s3_server.access_key, "not-the-secret")

    message = str(error.value)
    assert offsite.bucket in message and s3_server.endpoint in message and "HeadBucket" in message
    assert str(key_files[0]) in message and "s3_secret_access_key" in message


def test_a_key_without_permission_raises_naming_the_permission_to_grant(s3_server, make_offsite):
    offsite = make_offsite()

    with pytest.raises(OffsiteError) as error:
        prepare_bucket(offsite, s3_server.reader_key, s3_server.reader_secret)

    message = str(error.value)
    assert (
        "CreateBucket failed: AccessDenied" in message
        and f"grant s3:CreateBucket on arn:aws:s3:::{offsite.bucket}" in message
    )


def test_an_unreachable_endpoint_raises_an_offsite_error_naming_the_endpoint(s3_server, key_files):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    offsite = _offsite(s3_server, key_files).model_copy(
        update={"endpoint": f"http://127.0.0.1:{port}"}
    )
    client = s3_client(
        offsite, "key", "secret", max_attempts=1
    )  # the default 3 attempts add seconds of backoff

    with pytest.raises(OffsiteError) as error:
        prepare_bucket(offsite, "key", "secret", client=client)

    message = str(error.value)
    assert f"127.0.0.1:{port}" in message and offsite.bucket in message and "HeadBucket" in message
    assert "backup.offsite.endpoint" in message


# --- keys ----------------------------------------------------------------------------------------


def test_credentials_are_read_from_the_plan_files_without_whitespace(s3_server, make_offsite):
    assert credentials(make_offsite().repository) == (s3_server.access_key, s3_server.secret_key)


def test_a_missing_key_file_raises_naming_the_file_and_the_fix(make_offsite, key_files):
    key_files[1].unlink()

    with pytest.raises(OffsiteError) as error:
        credentials(make_offsite().repository)

    assert str(key_files[1]) in str(error.value) and "pulumi up" in str(error.value)


def test_an_empty_key_file_raises_naming_the_file(make_offsite, key_files):
    key_files[0].write_text(" \n")

    with pytest.raises(OffsiteError, match=f"{key_files[0]} .*is empty"):
        credentials(make_offsite().repository)


def test_restic_env_holds_the_keys_and_the_region(s3_server, make_offsite):
    assert restic_env(make_offsite(region="eu-central-1")) == {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "eu-central-1",
    }
