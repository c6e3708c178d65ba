"""In-memory fakes behind the `Runtime` and `Front` Protocols, the network probes and the
clock, for unit tests of the executor, the supervisor and the rollout driver.

The fakes share one `Journal` when given one, so a test can assert the order of steps
across the runtime, the front and the readiness waits ("the extra backend left the front
before it was removed"). Only calls that change something, and the waits, are journaled;
reads (backends, status, usage) are not.

mypy checks them against the Protocols (pyproject's [tool.mypy] files lists this file):
see the assignments at the bottom.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from conduitctl.errors import ValidationFailed
from conduitctl.fleet import BackendSpec
from conduitctl.front.base import Front, FrontStatus
from conduitctl.ops.ready import Probes
from conduitctl.runtime.base import (
    BackendStatus,
    ExitWatcher,
    KeyStore,
    LaunchSpec,
    LegacyLayout,
    OnRuntimeEvent,
    Runtime,
    State,
)
from conduitctl.settings import Settings
from conduitctl.supervise.probes import ProbeOutcome

Journal = list[tuple[object, ...]]
START = 1_000_000.0  # the fake clock's start: far below time.time(), so a hold never expires


def fake_key(name: str) -> bytes:
    """A key file in Conduit's shape ({mnemonic, privateKeyBase64}), one per backend."""
    private = base64.b64encode(f"key of {name}".encode()).decode()
    return json.dumps({"mnemonic": "", "privateKeyBase64": private}).encode()


class FakeClock:
    """Unix seconds that move only when told: `advance`, or `sleep` (which then runs the
    `on_sleep` hooks, so a test can change the world in the middle of a soak)."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.slept = 0.0
        self.on_sleep: list[Callable[[float], None]] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        for hook in list(self.on_sleep):
            hook(self.now)


@dataclass
class FakeBackend:
    """One backend the fake runtime holds (a container or a process)."""

    spec: LaunchSpec
    state: State = State.RUNNING
    pid: int | None = None
    started_at: float | None = None
    exit_code: int | None = None
    oom_killed: bool = False


class FakeRuntime:
    """A runtime in dicts: `containers` (name -> FakeBackend), `keys` (the data each backend
    keeps: its identity key, kept by stop and remove unless purged), `images` (tag -> id).

    `failing_starts` makes `start` of a name raise; `foreign_names` is what `foreign` reports.
    `kill` and `seed` are the test's hands (not journaled)."""

    name = "fake"

    def __init__(
        self, clock: Callable[[], float] | None = None, journal: Journal | None = None
    ) -> None:
        self.clock = clock if clock is not None else FakeClock()
        self.calls: Journal = journal if journal is not None else []
        self.containers: dict[str, FakeBackend] = {}
        self.keys: dict[str, bytes] = {}
        self.images: dict[str, str] = {}
        self.failing_starts: dict[str, Exception] = {}
        self.foreign_names: dict[str, str] = {}
        self.ooms: dict[str, int] = {}  # OOM kills counted per backend (a cgroup's counter)
        self.oom_log: list[tuple[str, float]] = []  # (name, when): what docker events would say
        self._pids = itertools.count(4000)

    # --- the test's hands -------------------------------------------------------------

    def seed(self, spec: LaunchSpec, state: State = State.RUNNING) -> FakeBackend:
        """A backend that was there before the test (made by an earlier `up`)."""
        running = state == State.RUNNING
        backend = FakeBackend(
            spec=spec,
            state=state,
            pid=next(self._pids) if running else None,
            started_at=self.clock() if running else None,
        )
        self.containers[spec.name] = backend
        self.keys.setdefault(spec.name, fake_key(spec.name))
        return backend

    def kill(self, name: str, exit_code: int = 1, oom: bool = False) -> None:
        """The backend dies on its own (a crash, or the OOM killer)."""
        backend = self.containers[name]
        backend.state, backend.pid, backend.exit_code = State.STOPPED, None, exit_code
        backend.oom_killed = oom
        if oom:
            self.ooms[name] = self.ooms.get(name, 0) + 1
            self.oom_log.append((name, self.clock()))

    def running(self) -> dict[str, LaunchSpec]:
        """The spec each running backend runs."""
        return {n: b.spec for n, b in self.containers.items() if b.state == State.RUNNING}

    def mutations(self) -> Journal:
        """The runtime's own journaled calls (without the front's or the waits')."""
        return [c for c in self.calls if c[0] in ("start", "stop", "remove", "retag")]

    # --- the Runtime Protocol ------------------------------------------------------------

    def status(self, name: str) -> BackendStatus:
        backend = self.containers.get(name)
        if backend is None:
            return BackendStatus(name=name, index=0, state=State.MISSING)
        return BackendStatus(
            name=name,
            index=backend.spec.backend.index,
            state=backend.state,
            pid=backend.pid,
            started_at=backend.started_at,
            restart_count=0,
            exit_code=backend.exit_code,
            oom_killed=backend.oom_killed,
            config_hash=backend.spec.config_hash(),
            image_id=self.images.get(backend.spec.image or ""),
        )

    def backends(self) -> list[BackendStatus]:
        ordered = sorted(self.containers.values(), key=lambda b: b.spec.backend.index)
        return [self.status(b.spec.name) for b in ordered]

    def start(self, spec: LaunchSpec) -> BackendStatus:
        self.calls.append(("start", spec.name))
        failure = self.failing_starts.get(spec.name)
        if failure is not None:
            raise failure
        backend = self.containers.get(spec.name) or FakeBackend(spec=spec)
        backend.spec, backend.state = spec, State.RUNNING
        backend.pid, backend.started_at = next(self._pids), self.clock()
        backend.exit_code, backend.oom_killed = None, False
        self.containers[spec.name] = backend
        self.keys.setdefault(spec.name, fake_key(spec.name))
        return self.status(spec.name)

    def stop(self, name: str, timeout: float = 10.0) -> None:
        self.calls.append(("stop", name))
        backend = self.containers.get(name)
        if backend is not None and backend.state == State.RUNNING:
            backend.state, backend.pid, backend.exit_code = State.STOPPED, None, 0

    def remove(self, name: str, purge: bool = False) -> None:
        self.calls.append(("remove", name, purge))
        self.containers.pop(name, None)
        if purge:
            self.keys.pop(name, None)

    def logs(self, name: str, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        return iter(())

    def data_names(self) -> list[str]:
        return sorted(self.keys)

    def oom_count(self, name: str) -> int | None:
        return self.ooms.get(name, 0)

    def foreign(self, names: Iterable[str]) -> dict[str, str]:
        return {n: self.foreign_names[n] for n in names if n in self.foreign_names}

    def launch_problems(self, specs: list[LaunchSpec]) -> dict[str, str]:
        return {}

    def image_id(self, tag: str | None) -> str | None:
        return self.images.get(tag) if tag is not None else None

    def retag(self, tag: str, image_id: str) -> bool:
        self.calls.append(("retag", tag, image_id))
        if self.images.get(tag) == image_id:
            return False
        self.images[tag] = image_id
        return True

    def oom_kills_since(self, since: float, until: float) -> set[str]:
        return {name for name, when in self.oom_log if since <= when <= until}

    def key_store(self, settings: Settings) -> KeyStore:
        return FakeKeys(self)

    def legacy(self, settings: Settings) -> LegacyLayout | None:
        return None  # the process runtime's answer: no conduit-manager layout here

    def watch_exits(
        self, loop: asyncio.AbstractEventLoop, on_event: OnRuntimeEvent
    ) -> ExitWatcher | None:
        return None  # deaths are found by the tick, as a runtime without events does

    def send_signal(self, name: str, sig: signal.Signals, pid: int | None = None) -> bool:
        self.calls.append(("signal", name, sig.name))
        backend = self.containers.get(name)
        if backend is None or backend.state != State.RUNNING or pid not in (None, backend.pid):
            return False
        if sig in (signal.SIGKILL, signal.SIGTERM):
            backend.state, backend.pid = State.STOPPED, None
            backend.exit_code = 128 + sig.value
        return True

    def usage(self, pid: int) -> tuple[float | None, int | None]:
        if any(b.pid == pid and b.state == State.RUNNING for b in self.containers.values()):
            return 1.0, 64 * 1024**2
        return None, None  # gone: what a real runtime reads for a dead pid


class FakeFront:
    """A front whose config is `(version, down)`: an install happens when that changes
    (bump `version` to make the next apply a reload). `check_error` makes its tool reject
    the candidate (`plan` and `apply` raise ValidationFailed, nothing is installed)."""

    def __init__(
        self,
        journal: Journal | None = None,
        *,
        kind: str = "nginx",
        running: bool = True,
        config: Path | None = None,
    ) -> None:
        self.kind = kind
        self.balances = kind != "none"
        self.calls: Journal = journal if journal is not None else []
        self.running = running
        self.version = 1
        # What runs now; a running front starts with the current config installed.
        self.installed: tuple[int, frozenset[str]] | None = (1, frozenset()) if running else None
        self.installs: list[frozenset[str]] = []  # the `down` set of each install
        self.reloads = 0
        self.check_error: str | None = None
        self.config = config

    @property
    def installed_config(self) -> Path | None:
        return self.config

    def _candidate(self, down: frozenset[str]) -> tuple[bool, tuple[int, frozenset[str]]]:
        candidate = (self.version, frozenset(down))
        changed = candidate != self.installed
        if changed and self.check_error is not None:
            raise ValidationFailed(self.check_error)
        return changed, candidate

    def _install(self, down: frozenset[str]) -> str:
        changed, candidate = self._candidate(down)
        if changed:
            self.installed = candidate
            self.installs.append(frozenset(down))
        if not self.running:
            self.running = True
            return "started"
        if changed:
            self.reloads += 1
            return "reloaded"
        return "unchanged"

    def status(self) -> FrontStatus:
        return FrontStatus(kind=self.kind, running=self.running, pid=self.pid())

    def plan(self, down: frozenset[str] = frozenset()) -> str:
        changed, _ = self._candidate(down)
        if not self.running:
            return "start"
        return "reload" if changed else "unchanged"

    def apply(self, down: frozenset[str] = frozenset()) -> str:
        self.calls.append(("front.apply", tuple(sorted(down))))
        return self._install(down)

    def set_down(self, down: frozenset[str]) -> str:
        self.calls.append(("front.set_down", tuple(sorted(down))))
        return self._install(down)

    def pid(self) -> int | None:
        return 4242 if self.running else None

    def listen_ports(self) -> set[int]:
        return {18443}

    def stop(self, timeout: float = 10.0) -> bool:
        self.calls.append(("front.stop",))
        was_running, self.running = self.running, False
        return was_running


class FakeProbes:
    """The network probes, answered from a FakeRuntime: a backend is ready (and probes well)
    while it runs, unless it is in `failing` or runs an image in `failing_images`.

    `as_probes()` is what a change takes (ops.ready.Probes); `probe_all` is the
    supervisor's prober. `sessions` is what each backend serves (0 unless set)."""

    def __init__(self, runtime: FakeRuntime, journal: Journal | None = None) -> None:
        self.runtime = runtime
        self.calls: Journal = journal if journal is not None else runtime.calls
        self.failing: set[str] = set()
        self.failing_images: set[str] = set()
        self.serving: dict[str, int] = {}
        self.probed: list[list[str]] = []  # the supervisor's targets, per probe round

    def healthy(self, name: str) -> bool:
        spec = self.runtime.running().get(name)
        if spec is None or name in self.failing:
            return False
        return spec.image not in self.failing_images

    def ready(self, settings: Settings, backend: BackendSpec) -> bool:
        return self.healthy(backend.name)

    def wait(self, settings: Settings, backends: list[BackendSpec], timeout: float) -> list[str]:
        self.calls.append(("wait", *(b.name for b in backends)))
        return sorted(b.name for b in backends if not self.healthy(b.name))

    def sessions(self, settings: Settings, name: str) -> int | None:
        return self.serving.get(name, 0)

    def as_probes(self) -> Probes:
        return Probes(ready=self.ready, wait=self.wait, sessions=self.sessions)

    async def probe_all(
        self, profile: str, backends: list[BackendSpec], timeout: float
    ) -> dict[str, ProbeOutcome]:
        self.probed.append([b.name for b in backends])
        return {
            b.name: ProbeOutcome(True, "", {"conduit_is_live": 1.0})
            if self.healthy(b.name)
            else ProbeOutcome(False, "timeout")
            for b in backends
        }


def fleet_config(
    state_dir: Path,
    containers: int = 3,
    *,
    image: str = "conduit-sim:1",
    front: str = "nginx",
    health: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """A small sim fleet's conduit.toml as a dict, its state under `state_dir`."""
    return {
        "cluster": {"name": "c", "containers": containers, "runtime": "process",
                    "state_dir": str(state_dir)},
        "workload": {"profile": "sim", "image": image},
        "front": {"kind": front, "listeners": ["tcp:18443"] if front != "none" else []},
        "health": dict(health or {}),
    }  # fmt: skip


def stale(spec: LaunchSpec, image: str = "conduit-sim:old") -> LaunchSpec:
    """The same backend as an earlier config ran it (another image: another config hash)."""
    return replace(spec, image=image)


# The Protocols, checked by mypy: a fake that drifts from its Protocol fails `make lint`.
_runtime: Runtime = FakeRuntime()
_front: Front = FakeFront()


@dataclass
class FakeKeys:
    """The fake runtime's key store: its `keys` dict."""

    runtime: FakeRuntime
    in_volumes = False

    def read(self, backend: str) -> bytes | None:
        return self.runtime.keys.get(backend)

    def write(self, backend: str, data: bytes) -> None:
        self.runtime.calls.append(("key.write", backend))
        self.runtime.keys[backend] = data

    def running(self, backend: str) -> bool:
        return self.runtime.status(backend).state == State.RUNNING

    def names(self) -> list[str]:
        return sorted(self.runtime.keys)
