"""The docker runtime: one hardened container per backend, one named volume for its data.

Containers are named {cluster}-{i} and labelled as conduitctl's; the config hash label tells
whether a running container still matches the settings. Images are used locally; nothing is
pulled unless workload.pull = true.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from conduitctl import labels
from conduitctl.conduit_cli import flag_problem
from conduitctl.errors import ConduitctlError, MissingDependency
from conduitctl.observe.cgroups import usage_for_pid
from conduitctl.runtime.base import BackendStatus, LaunchSpec, OnRuntimeEvent, State
from conduitctl.runtime.cli_versions import CliVersions
from conduitctl.runtime.docker_events import DockerEventWatcher
from conduitctl.runtime.docker_keys import DockerKeys
from conduitctl.runtime.docker_legacy import DockerLegacy
from conduitctl.settings import Settings
from conduitctl.units import format_size
from conduitctl.workloads import PROFILES

NAME_CONFLICT_RETRIES = 5
NAME_CONFLICT_BACKOFF_S = 0.2  # times the attempt: a name held by a removal in progress
_STATES = {
    "running": State.RUNNING,
    "restarting": State.RESTARTING,
    "created": State.STOPPED,
    "exited": State.STOPPED,
    "paused": State.STOPPED,
    "dead": State.STOPPED,
    "removing": State.STOPPED,
}


def container_kwargs(spec: LaunchSpec) -> dict[str, Any]:
    """The docker create arguments for one backend (pure): hardening, limits, labels, ports."""
    from docker.types import LogConfig, Ulimit

    h = spec.hardening
    b = spec.backend
    profile = PROFILES[spec.profile]
    bridge = h.network == "bridge"
    # In bridge mode the workload binds every interface inside its own network namespace and
    # docker publishes the ports on the host's loopback only.
    inside = replace(spec, backend=replace(b, host="0.0.0.0")) if bridge else spec
    argv = inside.argv(profile.data_dir)
    kwargs: dict[str, Any] = {
        "name": spec.name,
        "image": spec.image,
        "command": argv,
        "labels": {
            labels.LABEL_OWNER: labels.OWNER,
            labels.LABEL_CLUSTER: spec.cluster,
            labels.LABEL_INDEX: str(b.index),
            labels.LABEL_CONFIG_HASH: spec.config_hash(),
            labels.LABEL_PROFILE: spec.profile,
        },
        "user": h.user,
        "read_only": h.read_only,
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,size={format_size(h.tmpfs_size)}"},
        "security_opt": ["no-new-privileges:true"] if h.no_new_privileges else [],
        "cap_drop": list(h.cap_drop),
        "pids_limit": h.pids_limit,
        "mem_limit": b.memory_bytes,
        "memswap_limit": b.memory_bytes,  # no swap: an OOM is an OOM, not a crawl
        "nano_cpus": int(b.cpus * 1e9),
        "ulimits": [Ulimit(name="nofile", soft=h.nofile, hard=h.nofile)],
        "log_config": LogConfig(
            type="json-file",
            config={"max-size": format_size(h.log_max_size), "max-file": str(h.log_max_files)},
        ),
        "volumes": {
            labels.volume_name(spec.cluster, b.index): {"bind": profile.data_dir, "mode": "rw"}
        },
        "environment": {"CONDUIT_SIM_NAME": spec.name},
        "restart_policy": {"Name": h.restart_policy},
        "detach": True,
    }
    if bridge:
        ports: dict[str, tuple[str, int]] = {f"{b.metrics_port}/tcp": (b.host, b.metrics_port)}
        if b.listen_port is not None:
            ports[f"{b.listen_port}/tcp"] = (b.host, b.listen_port)
            ports[f"{b.listen_port}/udp"] = (b.host, b.listen_port)
        kwargs["ports"] = ports
    else:
        kwargs["network_mode"] = "host"
    return kwargs


def start_error_hint(exc: Any, spec: LaunchSpec) -> str:
    """Docker's start error in one line, with the fix for the ones we know."""
    explanation = str(getattr(exc, "explanation", None) or exc).strip().splitlines()[-1]
    if "setting rlimit" in explanation:
        return (
            f"docker cannot grant container.nofile = {spec.hardening.nofile} (dockerd's own "
            "open-files limit is lower); lower container.nofile or raise dockerd's LimitNOFILE"
        )
    return f"docker could not start it: {explanation}"


def _timestamp(text: str | None) -> float | None:
    if not text or text.startswith("0001-"):
        return None
    try:  # docker gives nanoseconds: trim to what fromisoformat reads
        head, _, frac = text.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()
    except ValueError:
        return None


class DockerRuntime:
    name = "docker"

    def __init__(
        self, cluster: str, client: Any = None, pull: bool = False, cli_cache: Path | None = None
    ) -> None:
        self.cluster = cluster
        self.pull = pull
        self._client = client
        self._cli_cache = cli_cache
        self._cli_versions: CliVersions | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env(timeout=60)
                self._client.ping()
            except Exception as exc:
                raise MissingDependency(
                    "dockerd does not answer at /var/run/docker.sock "
                    f"({type(exc).__name__}); start it (dockerd --bridge=none --iptables=false) "
                    'or set cluster.runtime = "process"'
                ) from None
        return self._client

    def key_store(self, settings: Settings) -> DockerKeys:
        return DockerKeys(settings, self)

    def legacy(self, settings: Settings) -> DockerLegacy:
        return DockerLegacy(settings, self)

    def watch_exits(
        self, loop: asyncio.AbstractEventLoop, on_event: OnRuntimeEvent
    ) -> DockerEventWatcher:
        """dockerd's event stream of this cluster's containers (subscribed at `start`)."""
        return DockerEventWatcher(loop, lambda: self.client, self.cluster, on_event)

    def _filters(self) -> dict[str, list[str]]:
        return {
            "label": [
                f"{labels.LABEL_OWNER}={labels.OWNER}",
                f"{labels.LABEL_CLUSTER}={self.cluster}",
            ]
        }

    def _containers(self) -> list[Any]:
        return list(self.client.containers.list(all=True, filters=self._filters()))

    def image_id(self, tag: str | None) -> str | None:
        try:
            return self._image_id(tag, {})
        except Exception:  # dockerd unreachable: recorded as unknown, not an error
            return None

    def retag(self, tag: str, image_id: str) -> bool:
        try:
            if self.client.images.get(tag).id == image_id:
                return False
            repository, _, version = tag.rpartition(":")
            self.client.images.get(image_id).tag(repository or tag, version or "latest")
            return True
        except Exception:  # the old image is gone: the current one runs
            return False

    def oom_kills_since(self, since: float, until: float) -> set[str]:
        try:
            events = self.client.events(
                since=int(since) - 1,
                until=int(until) + 1,
                filters={"type": "container", "event": "oom"},
                decode=True,
            )
            return {e.get("Actor", {}).get("Attributes", {}).get("name", "") for e in events} - {""}
        except Exception:
            return set()

    def launch_problems(self, specs: list[LaunchSpec]) -> dict[str, str]:
        """An image whose Conduit CLI would refuse the flags (exit 1 at every start: a crash
        loop), found before any station is touched. The volume is the data, owned at create."""
        problems: dict[str, str] = {}
        versions: dict[str, str | None] = {}  # image -> its CLI: one lookup for the fleet
        for spec in specs:
            profile = PROFILES[spec.profile]
            if not profile.conduit_cli or spec.command is not None or spec.image is None:
                continue  # workload.command: the operator's own command line
            if spec.image not in versions:
                versions[spec.image] = self._cli_version(spec.image)
            version = versions[spec.image]
            # None: not here yet (a refusal shows as its exit), or it names neither a version
            # nor known flags (taken on trust)
            if version is None:
                continue
            argv = spec.argv(profile.data_dir)
            problem = flag_problem(spec.image, version, argv, spec.dialect)
            if problem is not None:
                problems[spec.name] = problem
        return problems

    def _cli_version(self, image: str) -> str | None:
        image_id = self.image_id(image)
        if image_id is None:
            return None
        if self._cli_versions is None:
            self._cli_versions = CliVersions(self.client, self._cli_cache)
        return self._cli_versions.version(image_id)

    def foreign(self, names: Iterable[str]) -> dict[str, str]:
        wanted = set(names)
        found: dict[str, str] = {}
        # ignore_removed: a container another actor removes meanwhile is in nobody's way
        for container in self.client.containers.list(all=True, ignore_removed=True):
            marks = container.labels or {}
            if marks.get(labels.LABEL_LEGACY) == self.cluster:
                continue  # ours, in conduit-manager's layout (`rollback --legacy`)
            if (marks.get(labels.LABEL_OWNER), marks.get(labels.LABEL_CLUSTER)) == (
                labels.OWNER,
                self.cluster,
            ):
                continue
            name = container.name
            conduitctl_made = labels.LABEL_OWNER in marks or labels.LABEL_LEGACY in marks
            station = labels.legacy_index(name) is not None and container.status == "running"
            if station and not conduitctl_made:
                found[name] = (
                    f"conduit-manager's station runs here (container {name}, its key in its "
                    "own volume); a fleet beside it would start new stations with new keys: "
                    f"stop it first (docker stop {name}), or carry its key over first"
                )
            elif name in wanted:
                found[name] = (
                    f"a container conduitctl does not own has this name; rename or remove it "
                    f"(docker rm {name}) or change cluster.name"
                )
        return found

    def _get(self, name: str) -> Any | None:
        import docker.errors

        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        if container.labels.get(labels.LABEL_OWNER) != labels.OWNER:
            raise ConduitctlError(
                f"a container named {name} exists but conduitctl does not own it; "
                f"rename or remove it (docker rm {name}) or change cluster.name"
            )
        return container

    def _image_id(self, tag: str | None, cache: dict[str, str | None]) -> str | None:
        """The image a tag names now (None: not here), looked up once per listing."""
        import docker.errors

        if not tag:
            return None
        if tag not in cache:
            try:
                cache[tag] = str(self.client.images.get(tag).id)
            except docker.errors.ImageNotFound:
                cache[tag] = None
        return cache[tag]

    def _status(self, container: Any, images: dict[str, str | None] | None = None) -> BackendStatus:
        attrs = container.attrs
        tag_now = self._image_id(
            attrs.get("Config", {}).get("Image"), {} if images is None else images
        )
        state = attrs.get("State", {})
        index = int(container.labels.get(labels.LABEL_INDEX, "0"))
        running = state.get("Running", False)
        pid = state.get("Pid") or None
        usage = usage_for_pid(pid) if running and pid else None
        finished = _timestamp(state.get("FinishedAt"))
        return BackendStatus(
            name=container.name,
            index=index,
            state=_STATES.get(state.get("Status", ""), State.STOPPED),
            pid=pid if running else None,
            container_id=container.id[:12],
            started_at=_timestamp(state.get("StartedAt")) if running else None,
            restart_count=int(attrs.get("RestartCount", 0))
            + int(container.labels.get("io.conduitctl.recreates", "0")),
            exit_code=state.get("ExitCode") if finished else None,
            oom_killed=bool(state.get("OOMKilled")),
            cpu_seconds=usage.cpu_seconds if usage else None,
            rss_bytes=usage.memory_bytes if usage else None,
            config_hash=container.labels.get(labels.LABEL_CONFIG_HASH),
            image_id=attrs.get("Image"),
            image_changed=tag_now is not None and attrs.get("Image") != tag_now,
        )

    def status(self, name: str) -> BackendStatus:
        container = self._get(name)
        if container is None:
            return BackendStatus(name=name, index=int(name.rsplit("-", 1)[1]), state=State.MISSING)
        return self._status(container)

    def backends(self) -> list[BackendStatus]:
        images: dict[str, str | None] = {}
        statuses = [self._status(c, images) for c in self._containers()]
        return sorted(statuses, key=lambda s: s.index)

    def data_names(self) -> list[str]:
        volumes = self.client.volumes.list(filters=self._filters())
        prefix = f"{self.cluster}-data-"
        return sorted(
            (
                f"{self.cluster}-{v.name[len(prefix) :]}"
                for v in volumes
                if v.name.startswith(prefix)
            ),
            key=lambda n: int(n.rsplit("-", 1)[1]),
        )

    def _ensure_image(self, image: str | None) -> None:
        import docker.errors

        if image is None:
            raise ConduitctlError("workload.image is not set; set it in conduit.toml")
        try:
            self.client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        hint = "conduitctl sim build-image" if image.startswith("conduit-sim") else "docker load"
        if not self.pull:
            raise MissingDependency(
                f"image {image} is not present locally; build or load it ({hint}), "
                "or set workload.pull = true to pull it"
            )
        try:
            self.client.images.pull(image)
        except docker.errors.APIError as exc:
            raise MissingDependency(
                f"image {image} is missing and cannot be pulled ({exc.explanation or exc}); "
                f"build or load it locally ({hint})"
            ) from None

    def _ensure_volume(self, spec: LaunchSpec) -> None:
        import docker.errors

        name = labels.volume_name(spec.cluster, spec.backend.index)
        try:
            self.client.volumes.get(name)
        except docker.errors.NotFound:
            self.client.volumes.create(
                name=name,
                labels={
                    labels.LABEL_OWNER: labels.OWNER,
                    labels.LABEL_CLUSTER: spec.cluster,
                    labels.LABEL_INDEX: str(spec.backend.index),
                },
            )

    def start(self, spec: LaunchSpec) -> BackendStatus:
        import docker.errors

        container = self._get(spec.name)
        recreates = 0
        if container is not None:
            same = container.labels.get(labels.LABEL_CONFIG_HASH) == spec.config_hash()
            image_now = self._image_id(spec.image, {})
            if same and (image_now is None or container.attrs.get("Image") == image_now):
                if container.status != "running":
                    container.start()
                    container.reload()
                return self._status(container)
            recreates = int(container.labels.get("io.conduitctl.recreates", "0")) + 1
            self._remove(container)
        self._ensure_image(spec.image)
        self._ensure_volume(spec)
        kwargs = container_kwargs(spec)
        kwargs["labels"]["io.conduitctl.recreates"] = str(recreates)
        created: Any = None
        for attempt in range(NAME_CONFLICT_RETRIES + 1):
            try:
                created = self.client.containers.run(**kwargs)
                break
            except docker.errors.APIError as exc:
                leftover = self._get(spec.name)
                if leftover is not None:
                    self._remove(leftover)  # a container that cannot start is no use
                # Another actor (the supervisor finishing a restart it began before a hold)
                # created one by that name between our remove and our create: ours wins.
                if exc.status_code == 409 and attempt < NAME_CONFLICT_RETRIES:
                    # A container dockerd is still removing keeps its name meanwhile, and is
                    # no longer found by it: wait a little longer each time (3 s at most).
                    time.sleep(NAME_CONFLICT_BACKOFF_S * (attempt + 1))
                    continue
                raise ConduitctlError(f"{spec.name}: {start_error_hint(exc, spec)}") from None
        created.reload()
        return self._status(created)

    def _remove(self, container: Any, timeout: float = 10.0) -> None:
        """Remove it, idempotently: another actor (the supervisor finishing a restart it
        began before a hold) may be removing it already; then wait until it is gone."""
        import docker.errors

        try:
            container.remove(force=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409 or "already in progress" not in str(exc):
                raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.client.containers.get(container.id)
            except docker.errors.NotFound:
                return
            time.sleep(0.05)
        raise ConduitctlError(f"{container.name} is still being removed after {timeout:g}s")

    def stop(self, name: str, timeout: float = 10.0) -> None:
        container = self._get(name)
        if container is not None and container.status in ("running", "restarting"):
            container.stop(timeout=int(max(timeout, 1)))

    def remove(self, name: str, purge: bool = False) -> None:
        import docker.errors

        container = self._get(name)
        if container is not None:
            self._remove(container)
        if purge:
            index = int(name.rsplit("-", 1)[1])
            with contextlib.suppress(docker.errors.NotFound):
                volume = self.client.volumes.get(labels.volume_name(self.cluster, index))
                marks = volume.attrs.get("Labels") or {}
                ours = (marks.get(labels.LABEL_OWNER), marks.get(labels.LABEL_CLUSTER))
                if ours == (labels.OWNER, self.cluster):  # never a volume someone else made
                    volume.remove(force=True)

    def logs(self, name: str, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        container = self._get(name)
        if container is None:
            return
        if not follow:
            text = container.logs(tail=tail if tail is not None else "all").decode(errors="replace")
            yield from text.splitlines(keepends=True)
            return
        pending = ""
        for chunk in container.logs(
            stream=True, follow=True, tail=tail if tail is not None else "all"
        ):
            pending += chunk.decode(errors="replace")
            *lines, pending = pending.split("\n")
            for line in lines:
                yield line + "\n"

    def oom_count(self, name: str) -> int | None:
        """None: dockerd reports OOM kills as events and in State.OOMKilled instead."""
        return None

    def usage(self, pid: int) -> tuple[float | None, int | None]:
        """From the container's cgroup files: no API call, no `docker stats`."""
        usage = usage_for_pid(pid)
        return usage.cpu_seconds, usage.memory_bytes

    def wait_running(self, name: str, timeout: float = 10.0) -> BackendStatus:
        deadline = time.monotonic() + timeout
        status = self.status(name)
        while status.state != State.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
            status = self.status(name)
        return status

    # --- signals (the chaos drill) ---

    def send_signal(self, name: str, sig: signal.Signals, pid: int | None = None) -> bool:
        """Through the API (the container's main process); `pid` is its host pid (State.Pid)."""
        import docker.errors

        container = self._get(name)
        if container is None:
            return False
        state = container.attrs.get("State", {})
        if not state.get("Running") or (pid is not None and state.get("Pid") != pid):
            return False
        try:
            container.kill(signal=sig.name)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # it stopped between the look and the kill
                return False
            raise
        return True
