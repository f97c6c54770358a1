"""Local stand-ins for the upstream images the platform deploys.

No image registry is reachable in CI, so each upstream image is replaced by a
small local one with the same interface the platform relies on: uid/gid, data
paths, health-check binaries and entrypoint behaviour for the env vars in use.

postgres, redis, prom/prometheus and caddy derive from one shared Debian bookworm
rootfs made with debootstrap and imported once; busybox is the host's static
busybox binary alone.  Every image is tagged with a hash of its recipe, so
an image whose tag already exists is reused and reruns take seconds.
"""

import dataclasses
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker
from docker.errors import BuildError, ImageNotFound

FILES_DIR = Path(__file__).parent / "standin_files"
# Serialises builds across processes, so parallel test workers or benchmarks
# do not debootstrap the same base twice.
BUILD_LOCK_PATH = "/tmp/napdms-standins.lock"
HOST_BUSYBOX = Path("/bin/busybox")
BUILD_TIMEOUT_S = 900

BASE_SUITE = "bookworm"
BASE_PACKAGES = (
    "postgresql-15",
    "redis-server",
    "prometheus",
    "busybox",
    "ca-certificates",
    # localedef data for the postgres stand-in's en_US.UTF-8 locale.
    "locales",
    "caddy",
    # setcap, to give caddy the file capability upstream's binary has.
    "libcap2-bin",
)
# The image config Docker's debian:bookworm has; `docker import` sets none.
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["bash"]',
)


@dataclasses.dataclass(frozen=True)
class StandIn:
    """Recipe for one stand-in image.

    name: image name suffix and sub-directory of standin_files/ holding the
        Dockerfile and the files it copies.
    uses_base: whether the Dockerfile builds FROM the shared Debian base
        (passed as build argument BASE).
    The busybox recipe additionally gets the host's static /bin/busybox.
    """

    name: str
    uses_base: bool


_BUSYBOX = StandIn("busybox", uses_base=False)
_POSTGRES = StandIn("postgres", uses_base=True)
_REDIS = StandIn("redis", uses_base=True)
_PROMETHEUS = StandIn("prometheus", uses_base=True)
_CADDY = StandIn("caddy", uses_base=True)

# Upstream repository (as normalised by upstream_repo_of) -> stand-in.
STANDINS = {
    "busybox": _BUSYBOX,
    "postgres": _POSTGRES,
    "redis": _REDIS,
    "prom/prometheus": _PROMETHEUS,
    "caddy": _CADDY,
}


def upstream_repo_of(image_ref: str) -> str:
    """Return the repository of an image reference without registry, tag or digest.

    "docker.io/library/postgres:15@sha256:..." -> "postgres",
    "prom/prometheus:v2.53.0" -> "prom/prometheus".
    """
    name = image_ref.split("@", 1)[0]
    parts = name.split("/")
    # A first component is a registry host if it looks like one (Docker's rule).
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    parts[-1] = parts[-1].split(":", 1)[0]
    if len(parts) == 2 and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts)


def standin_image(upstream_repo: str, client: docker.DockerClient) -> str:
    """Return the tag of the local stand-in for upstream_repo, building it if needed.

    upstream_repo may be any reference to the upstream image (registry, tag
    and digest are ignored).  Raises KeyError for images without a stand-in
    and RuntimeError when a build step fails.
    """
    repo = upstream_repo_of(upstream_repo)
    if repo not in STANDINS:
        raise KeyError(
            "no stand-in for %r (from %r); supported: %s"
            % (repo, upstream_repo, ", ".join(sorted(STANDINS)))
        )
    standin = STANDINS[repo]
    with open(BUILD_LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base_tag = _ensure_base(client) if standin.uses_base else None
        return _ensure_standin(standin, base_tag, client)


def _digest(*chunks: bytes) -> str:
    sha = hashlib.sha256()
    for chunk in chunks:
        # Length-prefix each chunk so that different splits never collide.
        sha.update(b"%d:" % len(chunk))
        sha.update(chunk)
    return sha.hexdigest()[:16]


def _image_exists(client, tag):
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


# ----------------------------------------------------------------- base image


def _ensure_base(client) -> str:
    prune = (FILES_DIR / "base" / "prune.sh").read_bytes()
    recipe = json.dumps(
        {"suite": BASE_SUITE, "packages": BASE_PACKAGES, "changes": BASE_CHANGES},
        sort_keys=True,
    ).encode()
    tag = "napdms-standin-base:" + _digest(recipe, prune)
    if not _image_exists(client, tag):
        _build_base(client, tag)
    return tag


def _apt_mirror() -> str:
    """The Debian mirror apt already uses (debootstrap needs the same access)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        match = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", legacy.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def _build_base(client, tag):
    # Non-login shells often lack /usr/sbin in PATH.
    debootstrap = shutil.which("debootstrap") or shutil.which(
        "debootstrap", path="/usr/sbin:/usr/bin"
    )
    if debootstrap is None:
        raise RuntimeError(
            "building the stand-in base needs debootstrap: apt-get install -y debootstrap"
        )
    if os.geteuid() != 0:
        raise RuntimeError("building the stand-in base runs debootstrap, which needs root")
    workdir = tempfile.mkdtemp(prefix="napdms-standin-base-", dir="/var/tmp")
    rootfs = os.path.join(workdir, "rootfs")
    try:
        _run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=" + ",".join(BASE_PACKAGES),
                BASE_SUITE,
                rootfs,
                _apt_mirror(),
            ],
            "debootstrap",
        )
        _run(["sh", str(FILES_DIR / "base" / "prune.sh"), rootfs], "prune.sh")
        _import_rootfs(client, rootfs, tag)
    finally:
        _remove_tree(workdir)


def _run(argv, what):
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = result.stdout.decode(errors="replace")[-4000:]
        raise RuntimeError("%s failed with status %d:\n%s" % (what, result.returncode, tail))


def _import_rootfs(client, rootfs, tag):
    repository, _, version = tag.rpartition(":")
    # stderr goes to a file, not a pipe, so tar can never block on it.
    with tempfile.TemporaryFile() as tar_errors:
        # Docker provides /dev, /proc and /sys itself; debootstrap's device
        # nodes are not wanted in the image.
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", rootfs,
             "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "-c", "."],
            stdout=subprocess.PIPE,
            stderr=tar_errors,
        )
        try:
            # Streamed in chunks: the rootfs is never held in memory or on disk twice.
            client.api.import_image_from_stream(
                iter(lambda: tar.stdout.read(1 << 20), b""),
                repository=repository,
                tag=version,
                changes=list(BASE_CHANGES),
            )
        finally:
            tar.stdout.close()
            status = tar.wait()
        if status != 0:
            tar_errors.seek(0)
            raise RuntimeError(
                "tar of %s failed: %s" % (rootfs, tar_errors.read().decode(errors="replace"))
            )
    if not _image_exists(client, tag):
        raise RuntimeError("docker import of %s did not produce %s" % (rootfs, tag))


def _remove_tree(path):
    # If debootstrap died before unmounting what it bind-mounted into the
    # chroot, deleting through those mounts would reach the host's /dev or
    # /proc; unmount anything below path first.
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mounts") as mounts:
        targets = [line.split()[1] for line in mounts]
    for target in sorted((t for t in targets if t.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", target], check=False)
    shutil.rmtree(path, ignore_errors=True)


# -------------------------------------------------------------- stand-ins


def _is_static_elf(path):
    """Whether path is an ELF executable without a program interpreter."""
    with open(path, "rb") as elf:
        header = elf.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:  # 2 = ELFCLASS64
            return False
        endian = "<" if header[5] == 1 else ">"
        (phoff,) = struct.unpack_from(endian + "Q", header, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", header, 0x36)
        elf.seek(phoff)
        table = elf.read(phentsize * phnum)
    pt_interp = 3
    return all(
        struct.unpack_from(endian + "I", table, i * phentsize)[0] != pt_interp
        for i in range(phnum)
    )


def _context_files(standin):
    """(name in build context, content) pairs for standin, sorted by name."""
    recipe_dir = FILES_DIR / standin.name
    files = {p.name: p.read_bytes() for p in recipe_dir.iterdir() if p.is_file()}
    if standin is _BUSYBOX:
        if not _is_static_elf(HOST_BUSYBOX):
            raise RuntimeError(
                "%s is not a static binary; install it with apt-get install -y busybox-static"
                % HOST_BUSYBOX
            )
        files["busybox"] = HOST_BUSYBOX.read_bytes()
    return sorted(files.items())


def _context_tar(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            # Modes are set here, not taken from the checkout, so the image
            # only depends on file contents (which is what the tag hashes).
            info.mode = 0o755 if name.endswith(".sh") or name == "busybox" else 0o644
            tar.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer


def _ensure_standin(standin, base_tag, client) -> str:
    files = _context_files(standin)
    chunks = [(base_tag or "").encode()]
    for name, content in files:
        chunks += [name.encode(), content]
    tag = "napdms-standin-%s:%s" % (standin.name, _digest(*chunks))
    if _image_exists(client, tag):
        return tag
    try:
        client.images.build(
            fileobj=_context_tar(files),
            custom_context=True,
            tag=tag,
            buildargs={"BASE": base_tag} if base_tag else None,
            rm=True,
            forcerm=True,
            timeout=BUILD_TIMEOUT_S,
        )
    except BuildError as exc:
        log = "".join(chunk.get("stream", chunk.get("error", "")) for chunk in exc.build_log)
        raise RuntimeError("building %s failed: %s\n%s" % (tag, exc.msg, log[-4000:])) from exc
    return tag
