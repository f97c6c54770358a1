"""The deploy live test's application image, in the versions a release test needs.

`app_image(version, client)` builds tests/live/deploy_app (server.py on the stand-in base) with
APP_VERSION=version and tags it by a hash of its recipe, so a rerun reuses it in no time. The
versions the tests use: `1.0.0`, `1.0.1` (healthy), `broken` (never healthy), `fails-later`
(healthy, then failing after APP_FAIL_AFTER requests).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import tarfile
from pathlib import Path

import docker
from docker.errors import BuildError, ImageNotFound

from tests.live.standins import BUILD_LOCK_PATH, base_image

APP_DIR = Path(__file__).parent
CONTEXT_FILES = ("Dockerfile", "server.py", "curl")
REPOSITORY = "napdms-deploy-app"


def app_image(version: str, client: docker.DockerClient) -> str:
    """The local tag of the application image answering as `version`, built if missing."""
    base = base_image(client)
    files = {name: (APP_DIR / name).read_bytes() for name in CONTEXT_FILES}
    recipe = hashlib.sha256(base.encode() + b"\0" + version.encode())
    for name, content in sorted(files.items()):
        recipe.update(b"\0%s\0%d\0" % (name.encode(), len(content)))
        recipe.update(content)
    tag = f"{REPOSITORY}:{version}-{recipe.hexdigest()[:12]}"
    with open(BUILD_LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client.images.get(tag)
            return tag
        except ImageNotFound:
            pass
        try:
            client.images.build(
                fileobj=_context(files),
                custom_context=True,
                tag=tag,
                buildargs={"BASE": base, "VERSION": version},
                rm=True,
                forcerm=True,
            )
        except BuildError as error:
            log = "".join(c.get("stream", c.get("error", "")) for c in error.build_log)
            raise RuntimeError(f"building {tag} failed: {error.msg}\n{log[-3000:]}") from error
    return tag


def _context(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755 if name == "curl" else 0o644
            tar.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer
