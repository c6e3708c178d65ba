"""The faults a drill puts in and undoes (signals, the front's master, packet loss, host
pressure, an OOM), their host helpers (burner and holder children), and the undo steps."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import psutil

from conduitctl.drills.chaos.nft import (
    NFT_EXPIRY_MARGIN_S,
    nft_add,
    nft_delete,
    nft_ruleset,
    nft_table_name,
)
from conduitctl.drills.chaos.scenarios import FRONT, POLL_S, Scenario
from conduitctl.drills.clock import REAL_CLOCK, Clock
from conduitctl.errors import ConduitctlError
from conduitctl.events import EventKind
from conduitctl.front.base import Front
from conduitctl.runtime.base import Runtime, launch_specs
from conduitctl.settings import Settings
from conduitctl.store import Store

log = logging.getLogger(__name__)

MEMORY_CAP = 1024**3
MEMORY_SHARE = 0.25
ORPHAN_QUIT_S = 3.0  # an orphaned front worker gets this long to finish after SIGQUIT


class Cleanups:
    """Undo steps registered as the drill proceeds, run last-in-first-out exactly once (on
    success, an error, a signal, or at exit); one failing step does not stop the next."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []
        self._lock = threading.Lock()

    def add(self, what: str, step: Callable[[], None]) -> None:
        with self._lock:
            self._steps.append((what, step))

    def run(self) -> list[str]:
        """Run and forget every step; returns the failures, one line each."""
        failures: list[str] = []
        while True:
            with self._lock:
                if not self._steps:
                    return failures
                what, step = self._steps.pop()
            try:
                step()
            except Exception as exc:
                log.warning("chaos cleanup failed", extra={"what": what, "error": str(exc)})
                failures.append(f"{what}: {exc}")


def memory_pressure_bytes(available: int) -> int:
    """min(1 GiB, 25 % of what is available)."""
    return max(0, min(MEMORY_CAP, int(available * MEMORY_SHARE)))


_CHILD_PRELUDE = """
import ctypes, os, signal, sys, time
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except Exception:
    pass
if os.getppid() != parent:
    sys.exit(0)
end = time.monotonic() + float(sys.argv[2])
"""
_BURN = (
    _CHILD_PRELUDE
    + """
while time.monotonic() < end:
    pass
"""
)
_HOLD = (
    _CHILD_PRELUDE
    + """
n = int(sys.argv[3])
block = bytearray(n)
block[::4096] = b"\\x01" * len(range(0, n, 4096))  # resident: one write per page
print("ready", flush=True)
while time.monotonic() < end:
    time.sleep(0.1)
"""
)


def spawn_child(code: str, seconds: float, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, str(os.getpid()), f"{seconds:.3f}", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        close_fds=True,
    )


def end_child(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(2)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(2)
    if child.stdout is not None:
        child.stdout.close()


def _same_process(pid: int, create_time: float | None) -> bool:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 0.01
    except psutil.Error:
        return False


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


# --------------------------------------------------------------------------- faults


@dataclass
class Target:
    """One backend as the drill found it before the fault."""

    name: str
    pid: int | None


class Fault:
    """One fault: `inject()` (blocking; returns what it did in words) and `undo()` (blocking,
    idempotent, registered as a cleanup before the fault goes in)."""

    victims: list[str]

    def __init__(self, victims: list[str]) -> None:
        self.victims = victims
        self.notes: list[str] = []

    def inject(self) -> str:
        raise NotImplementedError

    def undo(self) -> None:
        return None


class SignalBackends(Fault):
    """SIGKILL (kill, kill-many) or SIGUSR1 (hang) to each target's process, through the
    runtime (docker: the container's main process). A hang is undone with SIGUSR2 when the
    supervisor did not replace the hung process."""

    def __init__(self, runtime: Runtime, targets: list[Target], sig: signal.Signals) -> None:
        super().__init__([t.name for t in targets])
        self.runtime = runtime
        self.targets = targets
        self.sig = sig
        self.signalled: list[Target] = []

    def inject(self) -> str:
        for target in self.targets:
            # Only the process the drill found: a backend restarted meanwhile is not hit.
            if not self.runtime.send_signal(target.name, self.sig, pid=target.pid):
                raise ConduitctlError(f"{target.name} (pid {target.pid}) is gone already")
            self.signalled.append(target)
        names = ", ".join(f"{t.name} (pid {t.pid})" if t.pid else t.name for t in self.targets)
        return f"{self.sig.name} {names}"

    def undo(self) -> None:
        if self.sig != signal.SIGUSR1:
            return
        for target in self.signalled:
            # Sent only when the very process we hung still runs (not replaced since).
            if self.runtime.send_signal(target.name, signal.SIGUSR2, pid=target.pid):
                self.notes.append(f"{target.name} was still hung: resumed with SIGUSR2")
        self.signalled = []


class KillFront(Fault):
    """SIGKILL the front's master. Its workers survive the master (nginx) and keep serving
    the old config: they are recorded first, and stopped (SIGQUIT, then SIGKILL) on undo."""

    def __init__(self, front: Front, clock: Clock = REAL_CLOCK) -> None:
        super().__init__([FRONT])
        self.front = front
        self.clock = clock
        self.pid: int | None = None
        self.workers: dict[int, float | None] = {}

    def inject(self) -> str:
        pid = self.front.pid()
        if pid is None:
            raise ConduitctlError("the front is not running; start it with conduitctl up")
        self.pid = pid
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children(recursive=True):
                self.workers[child.pid] = _create_time(child.pid)
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL the {self.front.kind} master (pid {pid})"

    def orphans(self) -> list[int]:
        return [p for p, created in self.workers.items() if _same_process(p, created)]

    def undo(self) -> None:
        orphans = self.orphans()
        if not orphans:
            return
        self.notes.append(
            f"{len(orphans)} worker(s) of the killed {self.front.kind} master outlived it and "
            "kept serving the old config; the drill stopped them (the supervisor does not)"
        )
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # graceful: their sessions may finish
        deadline = self.clock.monotonic() + ORPHAN_QUIT_S
        while self.clock.monotonic() < deadline and self.orphans():
            self.clock.sleep(0.05)
        for pid in self.orphans():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.workers = {}


class PacketLoss(Fault):
    """A share of the fleet's loopback packets dropped by an nftables table of its own."""

    def __init__(self, ports: list[int], percent: float, seconds: float) -> None:
        super().__init__([])
        self.ports = ports
        self.percent = percent
        self.expires_s = seconds + NFT_EXPIRY_MARGIN_S
        self.table = nft_table_name(os.getpid(), secrets.token_hex(3))
        self.added = False

    def inject(self) -> str:
        nft_add(nft_ruleset(self.table, self.ports, self.percent, self.expires_s))
        self.added = True
        return (
            f"{self.percent:g} % packet loss on 127.0.0.1 ports {_ports(self.ports)} "
            f"(nft table inet {self.table})"
        )

    def undo(self) -> None:
        if self.added:
            nft_delete(self.table)
            self.added = False


def _ports(ports: Sequence[int]) -> str:
    ports = sorted(ports)
    if len(ports) > 1 and ports[-1] - ports[0] == len(ports) - 1:
        return f"{ports[0]}-{ports[-1]}"
    return ",".join(str(p) for p in ports)


class HostPressure(Fault):
    """A child that burns one core (cpu) or holds memory (memory) for `seconds`."""

    def __init__(self, kind: Scenario, seconds: float) -> None:
        super().__init__([])
        self.kind = kind
        self.seconds = seconds
        self.child: subprocess.Popen[str] | None = None

    def inject(self) -> str:
        # The child ends by itself a little after the fault, should every undo fail.
        bound = self.seconds + 5
        if self.kind == Scenario.CPU:
            self.child = spawn_child(_BURN, bound)
            return f"one core busy in pid {self.child.pid}"
        size = memory_pressure_bytes(psutil.virtual_memory().available)
        self.child = spawn_child(_HOLD, bound, str(size))
        assert self.child.stdout is not None
        ready = self.child.stdout.readline().strip()  # ends at "ready" or when it exits
        if ready != "ready":
            raise ConduitctlError(f"the memory holder could not allocate {size >> 20} MiB")
        return f"{size >> 20} MiB held by pid {self.child.pid}"

    def undo(self) -> None:
        if self.child is not None:
            end_child(self.child)
            self.child = None


class LeakOne(Fault):
    """Recreate one simulator with `--leak-mb-per-s` (its identity key kept), held from the
    supervisor while it is replaced; the fault is the OOM kill that follows. The supervisor's
    restart uses the configured spec, without the leak: that is the recovery."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        victim: str,
        store: Store,
        timeout: float,
        aborted: Callable[[], bool],
        clock: Clock = REAL_CLOCK,
    ) -> None:
        super().__init__([victim])
        self.settings = settings
        self.runtime = runtime
        self.victim = victim
        self.clock = clock
        self.waiter = AwaitOom(store, clock.now(), timeout, aborted, only=victim, clock=clock)
        self.at: float | None = None

    def inject(self) -> str:
        from conduitctl.intent import holding

        spec = next(s for s in launch_specs(self.settings) if s.name == self.victim)
        # Fill the memory limit in about 4 s: fast enough for a drill, slow enough to serve.
        rate = max(spec.backend.memory_bytes // (4 * 1024**2), 8)
        leaking = replace(spec, extra_args=(*spec.extra_args, "--leak-mb-per-s", str(rate)))
        self.waiter.since = self.clock.now()
        with holding(self.settings.state_dir, [self.victim], seconds=30):
            self.runtime.start(leaking)
        what = self.waiter.inject()
        self.at = self.waiter.at
        return f"{self.victim} recreated leaking {rate} MB/s; {what}"


class AwaitOom(Fault):
    """Nothing to inject: the fleet leaks by its own flags; the fault is the next OOM kill."""

    def __init__(
        self,
        store: Store,
        since: float,
        timeout: float,
        aborted: Callable[[], bool],
        only: str | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        super().__init__([])
        self.store = store
        self.clock = clock
        self.since = since
        self.timeout = timeout
        self.aborted = aborted
        self.only = only
        self.at: float | None = None

    def inject(self) -> str:
        deadline = self.clock.monotonic() + self.timeout
        while self.clock.monotonic() < deadline and not self.aborted():
            for e in self.store.events(since=self.since, kinds={EventKind.OOM, EventKind.DEATH}):
                if self.only is not None and e.backend != self.only:
                    continue
                if e.backend and (e.kind == EventKind.OOM or e.data.get("oom")):
                    self.victims = [e.backend]
                    self.at = e.ts
                    return f"{e.backend} OOM-killed (its own leak, --leak-mb-per-s)"
            self.clock.sleep(POLL_S * 2)
        if self.aborted():
            raise ConduitctlError("chaos oom: interrupted while waiting for an OOM kill")
        raise ConduitctlError(
            f"no backend was OOM-killed within {self.timeout:g}s; raise --leak-mb-per-s or "
            "lower container.memory"
        )
