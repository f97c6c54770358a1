"""An S3 endpoint for the live tests: moto's server, run inside an Asustor's network namespace.

    with Asustor() as asustor, S3Server(asustor) as s3:
        s3.client().create_bucket(Bucket="offsite", ObjectLockEnabledForBucket=True)
        restic -r s3.repo_url("offsite", "repo") init       # with s3.env() in the environment

Inside the namespace it is reachable like the ASUSTOR's sshd: from the host directly and from
containers on any non-internal Docker bridge network (see asustor.py), at
http://<asustor.address>:<port>.  moto keeps everything in memory and accepts any credentials;
env() and the access_key/secret_key attributes hand out fixed fake ones.  Closing the Asustor
also stops the server; cutting its link makes the endpoint unreachable too.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

from tests.live.asustor import Asustor

PORT = 9000
START_TIMEOUT_S = 30.0
ACCESS_KEY = "napdms-test-access-key"
SECRET_KEY = "napdms-test-secret-key"
REGION = "us-east-1"


class S3Server:
    """moto's S3 (and the rest of its AWS APIs) listening on asustor.address:port."""

    def __init__(
        self, asustor: Asustor, port: int = PORT, start_timeout_s: float = START_TIMEOUT_S
    ):
        self.asustor = asustor
        self.port = port
        self.host = asustor.address
        self.endpoint_url = f"http://{self.host}:{port}"
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        started = time.monotonic()
        # The interpreter running the tests has moto[server]; the namespace shares its files.
        self.process = asustor.spawn(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(port)],
            log=asustor.etc / f"moto-{port}.log",
        )
        try:
            self._wait_ready(start_timeout_s)
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.monotonic() - started

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                # moto's own API answers once the server is up, without touching any backend.
                with urllib.request.urlopen(
                    self.endpoint_url + "/moto-api/data.json", timeout=2
                ) as response:
                    json.load(response)
                    return
            except (OSError, urllib.error.URLError, ValueError) as error:
                last = error
            time.sleep(0.1)
        raise RuntimeError(
            f"moto server on {self.endpoint_url} did not answer within {timeout_s:.0f} s "
            f"({last}):\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(self.process.log_path, errors="replace") as log:  # type: ignore[attr-defined]
                return log.read()[-chars:]
        except OSError:
            return ""

    def env(self) -> dict[str, str]:
        """Environment for restic (or the AWS CLI/SDKs) to use this endpoint's fake credentials."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def repo_url(self, bucket: str, prefix: str = "") -> str:
        """restic's URL for a repository in bucket (below prefix)."""
        return "s3:{}/{}{}".format(
            self.endpoint_url, bucket, "/" + prefix.strip("/") if prefix else ""
        )

    def client(self):
        """A boto3 S3 client for this endpoint (path-style addressing, as for any non-AWS S3)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                connect_timeout=5,
                read_timeout=30,
            ),
        )

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset API)."""
        request = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def close(self) -> None:
        """Stop the server. Idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.process.kill()
                self.process.wait(timeout=5)

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
