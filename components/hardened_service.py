"""`HardenedService`: the only easy way to run a container here, and it is hardened by default.

Defaults (CIS Docker Benchmark §5 numbers in brackets): numeric non-root user, all
capabilities dropped [5.4] with a named add-list, read-only root [5.13] with tmpfs where the
service writes, no-new-privileges [5.26], memory [5.11] and CPU [5.12] limits, a PIDs cgroup
limit [5.29] (pulumi-docker 5.x has no field for it: a pulumi-command `docker update --pids-limit`
on the container's own host sets it, and again whenever the container is replaced), a health check
[5.27] that `up` waits on, restart policy, json-file log rotation, ports bound to the host's
LAN address [5.14], image by digest (or, built from this repository, by image id), secrets as
0400 files owned by the service user.
Anything else is an exemption from the catalog, with its reason, written to a label.

A stateless service runs two colours (blue-green): each its own image, `replicas` containers,
init container and generated files (so a rotated secret can reach one colour at a time), the data
volumes shared. A service with a `reload` command (the proxy) keeps its containers when its
generated files change: they are told to read them again instead of being replaced.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.model.release import COLOURS, Colour
from components.model.spec import (
    CONFIG_VOLUME,
    INIT_WAIVERS,
    SECRETS_DIR,
    SECRETS_VOLUME,
    BackupPolicy,
    SecretUse,
    ServiceSpec,
)
from components.model.units import duration_seconds
from components.volumes import REGENERATED, declare_volume
from policies.rules.names import (
    BACKUP_LABEL,
    COLOUR_LABEL,
    HOST_LABEL,
    INIT_CONTAINER_LABEL,
    INIT_ROLE,
    MANAGED_BY_LABEL,
    MANAGED_BY_PROGRAM,
    PIDS_LIMIT_LABEL,
    REPLICA_LABEL,
    ROLE_LABEL,
    SERVICE_LABEL,
    STACK_LABEL,
    STATELESS_LABEL,
    cap_add_label,
    exempt_label,
)

LOG_OPTS = {
    "max-size": "10m",
    "max-file": "3",
    "labels": f"{SERVICE_LABEL},{STACK_LABEL},{HOST_LABEL}",
    "tag": "{{.Name}}",
}
"""json-file rotation (at most 30 MB of logs per container), and in every line an `attrs` map of
the container's service, stack and host labels and its name (`tag`): the log shipper reads its
Loki labels from the files alone, with no Docker socket (`components/catalog/log_shipper.py`)."""

TMPFS_OPTS = "rw,noexec,nosuid,nodev,size=64m,mode=1777"
"""Every tmpfs: nothing executed, no setuid, no device files there (rule `exec-tmpfs`). Docker's
default for `--tmpfs` too, said explicitly so no other engine or version can differ."""

INIT_PIDS_LIMIT = 16
"""Processes (and threads) the init container may run: its shell and one find/chmod/chown at a
time, with room to spare."""


def pids_limit_command(docker_name: str, limit: int) -> str:
    """The shell command that gives container `docker_name` its PIDs cgroup limit (the engine's
    `HostConfig.PidsLimit`), in the one spelling the policy pack accepts. Only a name and a
    number reach argv: nothing secret."""
    return shlex.join(["docker", "update", "--pids-limit", str(limit), docker_name])


def reload_command(docker_name: str, argv: Sequence[str]) -> str:
    """The shell command that runs a service's `reload` argv in its container `docker_name`."""
    return shlex.join(["docker", "exec", docker_name, *argv])


@dataclass(frozen=True)
class SourceVolume:
    """Another service's volume, mounted read-only (what the backup agent reads)."""

    volume: docker.Volume
    path: str


@dataclass(frozen=True)
class HardenedServiceArgs:
    """Everything one service on one host needs; built by `Platform` from the settings."""

    spec: ServiceSpec
    """The catalog entry with this stack's overrides applied."""
    stack: str
    host: str
    """Host name (key of `hosts`), used in resource names and labels."""
    name_prefix: str
    """Prefix of Docker object names (`napdms-<stack>`), so stacks sharing a daemon never
    collide."""
    provider: docker.Provider
    networks: Mapping[str, docker.Network]
    bind_address: str
    init_image: pulumi.Input[str]
    env: Mapping[str, str]
    """Non-secret environment, placeholders already substituted."""
    secrets: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    """Values of the platform secrets this service reads, by secret name."""
    colour_secrets: Mapping[Colour, Mapping[str, pulumi.Output[str]]] = field(default_factory=dict)
    """A coloured service's secret values by colour (a colour pinned at a secret's previous
    value during its rotation holds that one); `secrets` for a service without colours."""
    files: Mapping[str, str] = field(default_factory=dict)
    """Generated config files (name -> content) for `spec.config_dir`."""
    aliases: Sequence[str] = ()
    """More names the service answers to on its networks (the proxy: every public site's)."""
    protect_data: bool = False
    """Protect backed-up volumes from deletion (staging and prod)."""
    sources: Sequence[SourceVolume] = ()
    depends_on: Sequence[pulumi.Resource] = ()
    docker_host: str | None = None
    """The host's Docker endpoint (`hosts.<host>.docker_host`), which the docker CLI commands
    (PIDs limit, init run) use as DOCKER_HOST; None means the provider's default too (DOCKER_HOST
    or the local socket), so the commands inherit it."""


@dataclass(frozen=True)
class _Replica:
    """The names of one replica: its Pulumi resource, its Docker container, and the DNS names
    it answers to on the platform networks (first its hostname)."""

    resource_name: str
    docker_name: str
    hostname: str
    aliases: tuple[str, ...]
    number: int
    colour: Colour | None = None


@dataclass(frozen=True)
class _Init:
    """The one-shot init container and the command that ran it."""

    container: docker.Container
    run: command.local.Command


@dataclass(frozen=True)
class _Seeded:
    """A volume the init container fills with generated files, mounted read-only by the service."""

    volume: docker.Volume
    path: str
    uploads: list[docker.ContainerUploadArgs]


class HardenedService(pulumi.ComponentResource):
    """A catalog service on one host: pinned image, its volumes, and its hardened replicas."""

    containers: list[docker.Container]
    """One container per replica (of each colour: blue's, then green's)."""
    colours: dict[Colour, list[docker.Container]]
    """A coloured service's replicas by colour; empty for a service without colours."""
    volumes: dict[str, docker.Volume]
    """The service's data volumes by catalog volume name."""
    container_names: pulumi.Output[list[str]]
    """Docker names of the replicas."""
    image_digest: pulumi.Output[str]
    """`repo@sha256:...` the containers run (a coloured service's: the live colour's), or the
    built image's id (`sha256:...`)."""
    colour_digests: dict[Colour, pulumi.Output[str]]
    """What each colour of a coloured service runs, as `image_digest`; empty without colours."""

    def __init__(
        self, name: str, args: HardenedServiceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("napdms:service:HardenedService", name, None, opts)
        self._name, self._args = name, args
        self._on_host = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self._docker_name = f"{args.name_prefix}-{args.spec.name}"
        self._labels = {
            MANAGED_BY_LABEL: MANAGED_BY_PROGRAM,
            STACK_LABEL: args.stack,
            SERVICE_LABEL: args.spec.name,
            HOST_LABEL: args.host,
        }

        spec = args.spec
        colours = spec.colours
        self.colour_digests = {
            colour: _image(
                f"{name}-{colour}-image", spec, spec.colour_image_ref(colour), self._on_host
            )
            for colour in (COLOURS if colours else ())
        }
        self.image_digest = (
            self.colour_digests[colours.live]
            if colours
            else _image(f"{name}-image", spec, spec.image_ref, self._on_host)
        )
        self.volumes = self._data_volumes()
        replica_labels = {**self._labels, **_policy_labels(spec)}
        # Each colour of a coloured service has its own init container and generated files: a
        # rotated secret reaches one colour while the other keeps serving with its files.
        self._inits: dict[Colour | None, _Init] = {}
        mounts: dict[Colour | None, tuple[list, list]] = {}
        for colour in COLOURS if colours else (None,):
            seeded = self._seeded_volumes(colour)
            if spec.needs_init(args.files):
                container = self._init_container(seeded, colour)
                # Created, not started: it runs only once its PIDs limit is in place, and the
                # replicas wait for that run to succeed.
                self._inits[colour] = _Init(container, self._run_init(container, colour))
            mounts[colour] = self._mounts(seeded)
        replicas = range(1, spec.replicas + 1)
        self.colours = {
            colour: [
                self._replica(
                    self._names(n, colour),
                    mounts[colour],
                    self._replica_labels(replica_labels, colour),
                    self._depends_on(colour),
                )
                for n in replicas
            ]
            for colour in (COLOURS if colours else ())
        }
        if colours:
            self.containers = [c for members in self.colours.values() for c in members]
        else:
            self.containers = [
                self._replica(
                    self._names(n),
                    mounts[None],
                    self._replica_labels(replica_labels, None),
                    self._depends_on(None),
                )
                for n in replicas
            ]
        self.container_names = pulumi.Output.all(*[c.name for c in self.containers])
        outputs: dict[str, pulumi.Input] = {
            "container_names": self.container_names,
            "image_digest": self.image_digest,
        }
        if self.colour_digests:
            outputs["colour_digests"] = pulumi.Output.from_input(self.colour_digests)
        self.register_outputs(outputs)

    def _replica_labels(
        self, labels: Mapping[str, str], colour: Colour | None
    ) -> dict[str, pulumi.Input[str]]:
        """`labels`, and the id of the init container that wrote the replicas' files: new files
        (a rotated secret, a changed config) replace the init container, whose new id here then
        replaces the replicas too. A service that reloads keeps its replicas (`_reload`)."""
        init = self._inits.get(colour)
        if init is None or self._args.spec.reload is not None:
            return dict(labels)
        return {**labels, INIT_CONTAINER_LABEL: init.container.id}

    def _depends_on(self, colour: Colour | None) -> list[pulumi.Resource]:
        """What the replicas (of `colour`) start after: the services they depend on, and the
        run of the init container that wrote their files."""
        init = self._inits.get(colour)
        return [*self._args.depends_on, *([init.run] if init else [])]

    def _names(self, replica: int, colour: Colour | None = None) -> _Replica:
        """Replica `replica` of the service, or of its `colour`. A coloured replica answers to
        its colour's names only: a name shared by both colours would mix them in DNS."""
        spec, args = self._args.spec, self._args
        if colour is None:
            return _Replica(
                f"{self._name}-{replica}",
                f"{self._docker_name}-{replica}",
                f"{spec.name}-{replica}",
                (spec.name, f"{spec.name}-{replica}", *args.aliases),
                replica,
            )
        member = f"{spec.name}-{colour}-{replica}"
        return _Replica(
            f"{self._name}-{colour}-{replica}",
            f"{self._docker_name}-{colour}-{replica}",
            member,
            (f"{spec.name}-{colour}", member, *args.aliases),
            replica,
            colour,
        )

    def _volume(self, suffix: str, policy: BackupPolicy, protect: bool = False) -> docker.Volume:
        return declare_volume(
            f"{self._name}-{suffix}",
            f"{self._docker_name}-{suffix}",
            policy,
            self._labels,
            self._on_host,
            protect=protect,
        )

    def _data_volumes(self) -> dict[str, docker.Volume]:
        """The catalog's volumes; backed-up ones are protected outside dev."""
        return {
            v.name: self._volume(
                v.name, v.backup, protect=self._args.protect_data and v.backup.policy == "daily"
            )
            for v in self._args.spec.volumes
        }

    def _seeded_volumes(self, colour: Colour | None) -> list[_Seeded]:
        """Volumes for the secret files and the generated config files, with what goes in them;
        `colour`'s own, with the secret values that colour holds, for a coloured service.

        The init container writes them: the provider uploads through `/` of a container, which
        Docker refuses for a read-only root filesystem, and the service must not edit them."""
        spec, args = self._args.spec, self._args
        values = args.colour_secrets[colour] if colour else args.secrets
        prefix = f"{colour}-" if colour else ""
        seeded = []
        if spec.secrets:
            uploads = [_secret_upload(use, values[use.secret], spec) for use in spec.secrets]
            seeded.append(
                _Seeded(self._volume(prefix + SECRETS_VOLUME, REGENERATED), SECRETS_DIR, uploads)
            )
        if args.files:
            uploads = [
                _config_upload(spec, file_name, content)
                for file_name, content in sorted(args.files.items())
            ]
            seeded.append(
                _Seeded(self._volume(prefix + CONFIG_VOLUME, REGENERATED), spec.config_dir, uploads)
            )
        return seeded

    def _mounts(
        self, seeded: Sequence[_Seeded]
    ) -> tuple[list[docker.ContainerVolumeArgs], list[docker.ContainerMountArgs]]:
        """What each replica mounts: `volumes` entries, and `mounts` entries for prepared
        volumes."""
        spec = self._args.spec
        volumes = [
            docker.ContainerVolumeArgs(volume_name=self.volumes[v.name].name, container_path=v.path)
            for v in spec.volumes
            if not v.chown
        ]
        volumes += [
            docker.ContainerVolumeArgs(host_path=m.source, container_path=m.target, read_only=True)
            for m in spec.host_mounts
        ]
        # Other services' volumes (the backup agent's sources), then the generated files.
        volumes += [
            docker.ContainerVolumeArgs(
                volume_name=s.volume.name, container_path=s.path, read_only=True
            )
            for s in [*self._args.sources, *seeded]
        ]
        # A volume the init container prepared must not be filled from the image on first mount:
        # Docker would copy the image's root-owned sub-directories over the chown.
        prepared = [
            docker.ContainerMountArgs(
                target=v.path,
                source=self.volumes[v.name].name,
                type="volume",
                volume_options=docker.ContainerMountVolumeOptionsArgs(no_copy=True),
            )
            for v in spec.volumes
            if v.chown
        ]
        return volumes, prepared

    def _replica(
        self,
        names: _Replica,
        mounts: tuple[list[docker.ContainerVolumeArgs], list[docker.ContainerMountArgs]],
        labels: Mapping[str, pulumi.Input[str]],
        depends_on: Sequence[pulumi.Resource],
    ) -> docker.Container:
        """One hardened container of the service (of one colour, for a coloured service)."""
        spec, args = self._args.spec, self._args
        volumes, prepared = mounts
        resource_name, docker_name = names.resource_name, names.docker_name
        labels = {**labels, REPLICA_LABEL: str(names.number)}
        if names.colour is not None:
            labels[COLOUR_LABEL] = names.colour
        container = docker.Container(
            resource_name,
            name=docker_name,
            hostname=names.hostname,
            image=self.image_digest if names.colour is None else self.colour_digests[names.colour],
            user=spec.user,
            command=spec.command,
            entrypoints=spec.entrypoint,
            envs=_envs(args.env, spec.secrets),
            capabilities=docker.ContainerCapabilitiesArgs(
                drops=["ALL"], adds=[cap.name for cap in spec.cap_add] or None
            ),
            read_only=True,
            tmpfs={path: TMPFS_OPTS for path in spec.tmpfs} or None,
            security_opts=["no-new-privileges:true"],
            # Docker's default on a cgroup v1 host (the NAS kernels) is the host's namespace.
            cgroupns_mode="private",
            memory=spec.memory,
            memory_swap=spec.memory,
            cpus=_cpus(spec.cpus),
            healthcheck=_healthcheck(spec),
            wait=True,
            wait_timeout=_wait_timeout(spec),
            restart="unless-stopped",
            log_driver="json-file",
            log_opts=LOG_OPTS,
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=args.networks[segment].name,
                    aliases=list(names.aliases),
                )
                for segment in spec.networks
            ],
            ports=_ports(spec, args.bind_address),
            volumes=volumes or None,
            mounts=prepared or None,
            labels=_label_args(labels),
            stop_timeout=spec.stop_grace_s,
            destroy_grace_seconds=spec.stop_grace_s,
            must_run=True,
            # Fixed Docker names: the old container must go before its replacement starts.
            opts=pulumi.ResourceOptions.merge(
                self._on_host,
                pulumi.ResourceOptions(depends_on=list(depends_on), delete_before_replace=True),
            ),
        )
        # Set once it is up (and healthy): the limit applies from then on, and from the first
        # process of every restart, which starts from the stored HostConfig.
        self._pids_limit(resource_name, container, docker_name, spec.pids)
        init = self._inits.get(names.colour)
        if spec.reload and init is not None:
            self._reload(resource_name, container, docker_name, init)
        return container

    def _reload(
        self, resource_name: str, container: docker.Container, docker_name: str, init: _Init
    ) -> command.local.Command:
        """Tell the running replica to read its generated files again once the init container
        has rewritten them (a new init container: new files), instead of replacing it. A
        replaced replica starts with the new files and needs no reload, but one run more is
        harmless."""
        return self._docker_cli(
            f"{resource_name}-reload",
            reload_command(docker_name, self._args.spec.reload or []),
            init.container,
            after=[init.run, container],
        )

    def _pids_limit(
        self, resource_name: str, container: docker.Container, docker_name: str, limit: int
    ) -> command.local.Command:
        """The container's PIDs cgroup limit [5.29]. pulumi-docker 5.x has no field for it, so
        `docker update` sets it on the container's own host once the container exists, and again
        whenever it is replaced (a new id) or the limit changes (a new command). The policy pack
        reads the limit from this command; the audit reads HostConfig.PidsLimit."""
        return self._docker_cli(
            f"{resource_name}-pids", pids_limit_command(docker_name, limit), container
        )

    def _init_names(self, colour: Colour | None) -> tuple[str, str]:
        """The init container's resource and Docker names: `<service>-init`, or a coloured
        service's `<service>-<colour>-init`."""
        part = f"-{colour}" if colour else ""
        return f"{self._name}{part}-init", f"{self._docker_name}{part}-init"

    def _run_init(self, init: docker.Container, colour: Colour | None) -> command.local.Command:
        """Start the created init container once its PIDs limit is set, and wait for it: fails
        `up` when the init script fails (`docker start --attach` exits with its status)."""
        resource_name, docker_name = self._init_names(colour)
        limited = self._pids_limit(resource_name, init, docker_name, INIT_PIDS_LIMIT)
        return self._docker_cli(
            f"{resource_name}-run",
            shlex.join(["docker", "start", "--attach", docker_name]),
            init,
            after=[limited],
        )

    def _docker_cli(
        self,
        resource_name: str,
        create: str,
        container: docker.Container,
        after: Sequence[pulumi.Resource] = (),
    ) -> command.local.Command:
        """A docker CLI call against this service's host that runs again whenever `container` is
        replaced, after `after` (default: `container`). `create` names the container by its fixed
        Docker name, a plain string, so the policy pack can read it at preview; DOCKER_HOST is
        the provider's endpoint: the stack's, else the DOCKER_HOST the provider's SDK reads when
        the stack names none (so the pack pairs the two), else unset, for the local socket."""
        endpoint = self._args.docker_host or os.environ.get("DOCKER_HOST")
        return command.local.Command(
            resource_name,
            create=create,
            environment={"DOCKER_HOST": endpoint} if endpoint else None,
            triggers=[container.id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after) or [container]),
        )

    def _init_container(self, seeded: Sequence[_Seeded], colour: Colour | None) -> docker.Container:
        """One-shot root container (of `colour`), CHOWN and FOWNER only, no network: writes the
        secret and config files into their volumes and hands `chown` volumes to the service
        user, then exits."""
        resource_name, docker_name = self._init_names(colour)
        spec = self._args.spec
        chown_volumes = [v for v in spec.volumes if v.chown]
        labels = {
            **self._labels,
            ROLE_LABEL: INIT_ROLE,
            PIDS_LIMIT_LABEL: str(INIT_PIDS_LIMIT),
            **_INIT_EXCEPTIONS,
        }
        return docker.Container(
            resource_name,
            name=docker_name,
            image=self._args.init_image,
            user="0:0",
            command=[
                "sh",
                "-c",
                _init_script(spec, [v.path for v in chown_volumes], [s.path for s in seeded]),
            ],
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=["CHOWN", "FOWNER"]),
            read_only=False,
            security_opts=["no-new-privileges:true"],
            # Docker's default on a cgroup v1 host (the NAS kernels) is the host's namespace.
            cgroupns_mode="private",
            network_mode="none",
            memory=32,
            memory_swap=32,
            cpus="0.1",
            volumes=[
                docker.ContainerVolumeArgs(
                    volume_name=self.volumes[v.name].name, container_path=v.path
                )
                for v in chown_volumes
            ]
            + [
                docker.ContainerVolumeArgs(volume_name=s.volume.name, container_path=s.path)
                for s in seeded
            ],
            uploads=[upload for s in seeded for upload in s.uploads] or None,
            # Uploaded at creation, started by `_run_init` once its PIDs limit is set.
            start=False,
            must_run=False,
            restart="no",
            log_driver="json-file",
            log_opts=LOG_OPTS,
            labels=_label_args(labels),
            opts=pulumi.ResourceOptions.merge(
                self._on_host, pulumi.ResourceOptions(delete_before_replace=True)
            ),
        )


_INIT_EXCEPTIONS: Mapping[str, str] = {
    **{exempt_label(rule): reason for rule, reason in INIT_WAIVERS.items()},
    cap_add_label("CHOWN"): "give the files and volume roots to the service user",
    cap_add_label("FOWNER"): "set 0400 on files the service user owns",
}
"""The init container's documented exceptions and capabilities."""


def _image(
    resource_name: str, spec: ServiceSpec, ref: str, on_host: pulumi.ResourceOptions
) -> pulumi.Output[str]:
    """The image `ref` (`spec.image_ref`, or a colour's) by content: the pulled image's repo
    digest, or the id of an image built by the host's daemon (no registry holds it; the build
    never leaves the host)."""
    if spec.build is None:
        return docker.RemoteImage(
            resource_name, name=ref, keep_locally=True, opts=on_host
        ).repo_digest
    return docker.Image(
        resource_name,
        image_name=ref,
        build=docker.DockerBuildArgs(
            context=spec.build.context,
            dockerfile=spec.build.dockerfile,
            args=spec.build.args or None,
            platform="linux/amd64",  # both NAS boxes are x86-64
        ),
        skip_push=True,
        opts=on_host,
    ).repo_digest


def _healthcheck(spec: ServiceSpec) -> docker.ContainerHealthcheckArgs:
    health = spec.health
    return docker.ContainerHealthcheckArgs(
        tests=health.test,
        interval=health.interval,
        timeout=health.timeout,
        retries=health.retries,
        start_period=health.start_period,
    )


def _ports(spec: ServiceSpec, bind_address: str) -> list[docker.ContainerPortArgs] | None:
    """Published ports, bound to the host's LAN address unless the catalog says why not."""
    ports = [
        docker.ContainerPortArgs(
            internal=port.internal,
            external=port.external,
            protocol=port.protocol,
            ip="0.0.0.0" if port.all_interfaces else bind_address,
        )
        for port in spec.ports
    ]
    return ports or None


def _init_script(spec: ServiceSpec, chown_paths: list[str], seeded_paths: list[str]) -> str:
    """Ownership and modes, idempotent: chown volumes to the service user, seeded files 0400
    (scripts 0500), seeded directories 0500. Upload owners are set again in case a provider
    version ignores them."""
    owner = f"{spec.uid}:{spec.gid}"
    # Recursive: a volume's content may arrive root-owned (restored from a backup, or from an
    # earlier deploy that ran as root). `chown: true` is for small volumes (certificates, state).
    # A tree the service user owns already is left as it is: root without DAC_READ_SEARCH cannot
    # read the user's 0700 folders (Caddy's certificates), and the init container runs again
    # beside the running service whenever its files change (a reloaded proxy).
    steps = (
        [f"find {' '.join(chown_paths)} -user {spec.uid} -prune -o -exec chown {owner} {{}} +"]
        if chown_paths
        else []
    )
    for path in seeded_paths:
        steps += [
            # A later deploy finds the last run's 0500 folders of the service user, which root
            # cannot enter without DAC_READ_SEARCH: take each back before find reads it (`';'`
            # runs chown before find descends; `chown -R` reads a folder before changing it).
            f"find {path} -type d -exec chown 0:0 {{}} ';'",
            f"find {path} -type f ! -name '*.sh' -exec chmod 0400 {{}} +",
            f"find {path} -type f -name '*.sh' -exec chmod 0500 {{}} +",
            # Also the sub-folders an upload to a nested name creates (root's 0755).
            f"find {path} -type d -exec chmod 0500 {{}} +",
            f"chown -R {owner} {path}",
        ]
    return "set -e; " + "; ".join(steps)


def _secret_upload(
    use: SecretUse, value: pulumi.Output[str], spec: ServiceSpec
) -> docker.ContainerUploadArgs:
    template = use.template
    content = value if template is None else value.apply(lambda v: template.replace("{secret}", v))
    return docker.ContainerUploadArgs(
        file=use.path,
        content=pulumi.Output.secret(content),
        permissions="0400",
        owner=str(spec.uid),
        group=str(spec.gid),
    )


def _config_upload(spec: ServiceSpec, file_name: str, content: str) -> docker.ContainerUploadArgs:
    # Scripts an entrypoint runs must be executable; everything else is read-only for the owner.
    return docker.ContainerUploadArgs(
        file=f"{spec.config_dir}/{file_name}",
        content=content,
        permissions="0500" if file_name.endswith(".sh") else "0400",
        owner=str(spec.uid),
        group=str(spec.gid),
    )


def _envs(env: Mapping[str, str], secrets: Sequence[SecretUse]) -> list[str] | None:
    pairs = dict(env)
    pairs.update({use.env: use.path for use in secrets if use.env})
    return [f"{key}={value}" for key, value in sorted(pairs.items())] or None


def _policy_labels(spec: ServiceSpec) -> dict[str, str]:
    """Labels the policy pack and the audit read: backups, exemptions and added capabilities."""
    labels = {exempt_label(rule): reason for rule, reason in spec.waivers().items()}
    labels.update({cap_add_label(cap.name): cap.reason for cap in spec.cap_add})
    labels[BACKUP_LABEL] = ",".join(f"{v.name}:{v.backup.policy}" for v in spec.volumes) or "none"
    labels[PIDS_LIMIT_LABEL] = str(spec.pids)  # a record; `_pids_limit` sets the limit
    if spec.stateless:
        labels[STATELESS_LABEL] = "true"
    return labels


def _label_args(labels: Mapping[str, pulumi.Input[str]]) -> list[docker.ContainerLabelArgs]:
    return [
        docker.ContainerLabelArgs(label=key, value=value) for key, value in sorted(labels.items())
    ]


def _cpus(cpus: float) -> str:
    return f"{cpus:g}"


def _wait_timeout(spec: ServiceSpec) -> int:
    """Seconds `up` waits for healthy: the start period plus every allowed failed probe, doubled."""
    health = spec.health
    budget = duration_seconds(health.start_period) + health.retries * (
        duration_seconds(health.interval) + duration_seconds(health.timeout)
    )
    return int(2 * budget) + 30
