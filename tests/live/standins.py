"""Local stand-ins for the upstream images the platform deploys.

No image registry is reachable in CI, so each upstream image is replaced by a
small local one with the same interface the platform relies on: uid/gid, data
paths, health-check binaries and entrypoint behaviour for the env vars in use.

postgres, redis, prom/prometheus, prom/alertmanager, prom/blackbox-exporter, caddy and
napdms/backup-agent derive from one
shared Debian bookworm rootfs made with debootstrap and imported once; busybox
is the host's static busybox binary alone.  Every image is tagged with a hash
of its recipe, so an image whose tag already exists is reused and reruns take
seconds.  The backup agent's recipe also covers its pinned Python wheels and
our napdms_ops/backup code, so a code change rebuilds only the last layer.
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
import sys
import tarfile
import tempfile
from pathlib import Path

import docker
from docker.errors import BuildError, ImageNotFound

FILES_DIR = Path(__file__).parent / "standin_files"
REPO_ROOT = Path(__file__).resolve().parents[2]
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
    "prometheus-alertmanager",
    "prometheus-blackbox-exporter",
    "busybox",
    "ca-certificates",
    # localedef data for the postgres stand-in's en_US.UTF-8 locale.
    "locales",
    "caddy",
    # setcap, to give caddy the file capability upstream's binary has.
    "libcap2-bin",
    # The backup agent (napdms/backup-agent): the engine, its interpreter, the sftp transport
    # and the Redis dump client; postgresql-15 above gives it pg_dump, initdb and pg_ctl.
    "restic",
    "python3",
    "openssh-client",
    "redis-tools",
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
    wheels: pinned requirements ("name==version", every dependency listed: they are
        installed without resolution) unpacked for cp311 manylinux x86_64 into lib/ of
        the build context.  The pins are part of the recipe hash; the unpacked tree is
        cached on the host, so PyPI is asked once per machine.
    code: files or directories of this repository (relative to its root) copied into
        app/ of the build context under the same relative path; their contents are
        part of the recipe hash.
    The busybox recipe additionally gets the host's static /bin/busybox.
    """

    name: str
    uses_base: bool
    wheels: tuple[str, ...] = ()
    code: tuple[str, ...] = ()


_BUSYBOX = StandIn("busybox", uses_base=False)
_POSTGRES = StandIn("postgres", uses_base=True)
_REDIS = StandIn("redis", uses_base=True)
_PROMETHEUS = StandIn("prometheus", uses_base=True)
_CADDY = StandIn("caddy", uses_base=True)
_ALERTMANAGER = StandIn("alertmanager", uses_base=True)
_BLACKBOX = StandIn("blackbox", uses_base=True)
# What napdms_ops/backup/Dockerfile installs on postgres:17 (Python side), at the versions
# requirements*.txt pin, with every transitive dependency pinned too.
_BACKUP_AGENT = StandIn(
    "backup-agent",
    uses_base=True,
    wheels=(
        "pydantic==2.13.4",
        "pydantic_core==2.46.4",
        "typing_extensions==4.15.0",
        "annotated_types==0.7.0",
        "typing_inspection==0.4.2",
        "boto3==1.43.11",
        "botocore==1.43.11",
        "jmespath==1.1.0",
        "s3transfer==0.17.0",
        "python-dateutil==2.9.0.post0",
        "six==1.17.0",
        "urllib3==2.7.0",
    ),
    code=(
        "components/__init__.py",
        "components/model/__init__.py",
        "components/model/plan.py",
        "components/model/strict.py",
        "napdms_ops/__init__.py",
        "napdms_ops/backup",
    ),
)

# Upstream repository (as normalised by upstream_repo_of) -> stand-in.
STANDINS = {
    "busybox": _BUSYBOX,
    "postgres": _POSTGRES,
    "redis": _REDIS,
    "prom/prometheus": _PROMETHEUS,
    "prom/alertmanager": _ALERTMANAGER,
    "prom/blackbox-exporter": _BLACKBOX,
    "caddy": _CADDY,
    "napdms/backup-agent": _BACKUP_AGENT,
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
            "no stand-in for {!r} (from {!r}); supported: {}".format(
                repo, upstream_repo, ", ".join(sorted(STANDINS))
            )
        )
    standin = STANDINS[repo]
    with open(BUILD_LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base_tag = _ensure_base(client) if standin.uses_base else None
        return _ensure_standin(standin, base_tag, client)


def base_image(client: docker.DockerClient) -> str:
    """Return the tag of the shared Debian base (python3, busybox, ...), building it if needed,
    for test images built FROM it (tests/live/deploy_app)."""
    with open(BUILD_LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_base(client)


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
        raise RuntimeError(f"{what} failed with status {result.returncode}:\n{tail}")


def _import_rootfs(client, rootfs, tag):
    repository, _, version = tag.rpartition(":")
    # stderr goes to a file, not a pipe, so tar can never block on it.
    with tempfile.TemporaryFile() as tar_errors:
        # Docker provides /dev, /proc and /sys itself; debootstrap's device
        # nodes are not wanted in the image.
        tar = subprocess.Popen(
            [
                "tar",
                "--numeric-owner",
                "-C",
                rootfs,
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-c",
                ".",
            ],
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
                "tar of {} failed: {}".format(rootfs, tar_errors.read().decode(errors="replace"))
            )
    if not _image_exists(client, tag):
        raise RuntimeError(f"docker import of {rootfs} did not produce {tag}")


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
        struct.unpack_from(endian + "I", table, i * phentsize)[0] != pt_interp for i in range(phnum)
    )


def _context_files(standin):
    """(name in build context, content) pairs for standin, sorted by name.

    Covers everything the recipe hash depends on except the wheels (see _wheel_tree).
    """
    recipe_dir = FILES_DIR / standin.name
    files = {p.name: p.read_bytes() for p in recipe_dir.iterdir() if p.is_file()}
    if standin is _BUSYBOX:
        if not _is_static_elf(HOST_BUSYBOX):
            raise RuntimeError(
                f"{HOST_BUSYBOX} is not a static binary; "
                "install it with apt-get install -y busybox-static"
            )
        files["busybox"] = HOST_BUSYBOX.read_bytes()
    for relative in standin.code:
        for path in _code_files(REPO_ROOT / relative):
            files["app/" + path.relative_to(REPO_ROOT).as_posix()] = path.read_bytes()
    return sorted(files.items())


def _code_files(path):
    """The source files at path (a file, or a directory walked recursively), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RuntimeError(f"stand-in code path {path} does not exist")
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


# Tags pip may install for Debian bookworm's python3 (CPython 3.11, glibc 2.36, x86_64).
_WHEEL_PLATFORM = (
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
)
WHEELS_CACHE = Path("/var/tmp/napdms-standin-wheels")


def _wheel_tree(wheels) -> Path:
    """A directory holding `wheels` installed for the image's Python, cached by their pins."""
    target = WHEELS_CACHE / _digest(json.dumps([list(wheels), list(_WHEEL_PLATFORM)]).encode())
    if target.is_dir():
        return target
    WHEELS_CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="partial-", dir=WHEELS_CACHE))
    try:
        env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore", PIP_DISABLE_PIP_VERSION_CHECK="1")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(scratch / "lib"),
                "--no-deps",
                "--no-compile",
                "--only-binary=:all:",
                *_WHEEL_PLATFORM,
                *wheels,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if result.returncode != 0:
            raise RuntimeError(
                "pip could not fetch the stand-in's wheels ({}):\n{}".format(
                    " ".join(wheels), result.stdout.decode(errors="replace")[-4000:]
                )
            )
        # Console scripts (jmespath's jp.py) are not wanted on the image's import path.
        shutil.rmtree(scratch / "lib" / "bin", ignore_errors=True)
        os.rename(scratch / "lib", target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _context_tar(files, trees=()):
    """The build context: files as (name, content) and trees as (prefix, host directory)."""
    buffer = tempfile.TemporaryFile()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directories = set()

        def add_parents(name):
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)

        def add_file(name, content):
            add_parents(name)
            info = tarfile.TarInfo(name)
            info.size = len(content)
            # Modes are set here, not taken from the checkout, and times stay 0, so the
            # image only depends on file contents (which is what the tag hashes) and
            # Docker's layer cache matches a tree it has seen before.
            info.mode = 0o755 if name.endswith(".sh") or name == "busybox" else 0o644
            tar.addfile(info, io.BytesIO(content))

        for name, content in files:
            add_file(name, content)
        for prefix, root in trees:
            for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
                add_file(prefix + "/" + path.relative_to(root).as_posix(), path.read_bytes())
    buffer.seek(0)
    return buffer


def _ensure_standin(standin, base_tag, client) -> str:
    files = _context_files(standin)
    chunks = [(base_tag or "").encode()]
    for name, content in files:
        chunks += [name.encode(), content]
    if standin.wheels:
        chunks += [b"wheels", json.dumps([list(standin.wheels), list(_WHEEL_PLATFORM)]).encode()]
    tag = f"napdms-standin-{standin.name}:{_digest(*chunks)}"
    if _image_exists(client, tag):
        return tag
    trees = [("lib", _wheel_tree(standin.wheels))] if standin.wheels else []
    context = _context_tar(files, trees)
    try:
        client.images.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            buildargs={"BASE": base_tag} if base_tag else None,
            rm=True,
            forcerm=True,
            timeout=BUILD_TIMEOUT_S,
        )
    except BuildError as exc:
        log = "".join(chunk.get("stream", chunk.get("error", "")) for chunk in exc.build_log)
        raise RuntimeError(f"building {tag} failed: {exc.msg}\n{log[-4000:]}") from exc
    finally:
        context.close()
    return tag
