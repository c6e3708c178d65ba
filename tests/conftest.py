"""Shared test fixtures. Keep this file to small, widely useful helpers."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# A short base for the tests' temporary directories under pytest-xdist: a fleet's sockets
# live in its state dir under tmp_path, and HAProxy refuses a unix socket path longer than
# 97 bytes, which /tmp/pytest-of-root/pytest-N/popen-gwN/<test name>/state/run/... passes.
SHORT_TEMP_KEEP = 3  # the newest sessions kept, as pytest keeps its own
SHORT_TEMP_MAX_AGE_S = 3600.0  # and any younger than this (it may still run)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Under xdist without --basetemp, the controller picks a short one for every worker:
    /tmp/ct-<uid>/<random>/popen-gwN instead of /tmp/pytest-of-<user>/pytest-N/popen-gwN."""
    workers = getattr(config.option, "numprocesses", None)
    if not workers or config.option.basetemp or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    root = Path(tempfile.gettempdir()) / f"ct-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    if root.is_symlink() or root.stat().st_uid != os.getuid():
        return  # not ours: leave pytest's own default
    old = sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in old[SHORT_TEMP_KEEP - 1 :]:
        if time.time() - path.stat().st_mtime > SHORT_TEMP_MAX_AGE_S:
            shutil.rmtree(path, ignore_errors=True)
    config.option.basetemp = tempfile.mkdtemp(prefix="", dir=root)


# Under `--dist loadfile` the tests of a file run on one worker, one after the other: they
# may share a fleet's name (a memory cgroup, docker containers and volumes), a module-scoped
# fixture or a global docker name. The tests of these files each have fleets (and images) of
# their own names, so their tests go to any worker, each on its own.
SPREAD_FILES = frozenset(
    {
        "tests/integration/test_drain.py",
        "tests/integration/test_fleet.py",
        "tests/integration/test_rollback.py",
        "tests/integration/test_rollout.py",
        "tests/integration/test_supervisor.py",
    }
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, except that the tests of SPREAD_FILES are scheduled one by one.

    (xdist's own `loadgroup` cannot do it here: it renames the items to carry their group,
    which this pytest's node ids no longer follow.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SpreadOrFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if path in SPREAD_FILES else path

    return SpreadOrFileScheduling(config, log)


# Loopback ports the tests hand out, all below the kernel's ephemeral range (32768+) so an
# outgoing connection cannot take one between the check and the bind: consecutive blocks
# (a fleet's ports) from one range, single ports from another, so a single port never lands
# in a block that is handed out but not bound yet. Under pytest-xdist each worker (gw0,
# gw1, ...) gets a slice of each range of its own: two workers never pick the same port.
BLOCK_PORTS = (20000, 30000)
SINGLE_PORTS = (30000, 32000)


def worker_slice(low: int, high: int) -> tuple[int, int]:
    """This xdist worker's share [start, stop) of the ports [low, high); all of it outside
    xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    size = (high - low) // max(count, 1)
    return low + index * size, low + (index + 1) * size


class _Ports:
    """Hands out ports of one slice in turn, round and round, each checked free for TCP and
    UDP: two calls in a row never return the same port, bound or not."""

    def __init__(self, low: int, high: int) -> None:
        self.range = (low, high)
        self.next: int | None = None

    def take(self, count: int, host: str) -> int:
        start, stop = worker_slice(*self.range)
        if count > stop - start:
            raise RuntimeError(f"no block of {count} ports fits in {start}-{stop}")
        if self.next is None or not start <= self.next < stop:
            # Anywhere at first: a run right after another does not meet its TIME_WAIT ports.
            self.next = random.randrange(start, stop - count + 1)
        tried = 0
        while tried < stop - start:
            base = self.next if self.next + count <= stop else start
            taken = next((p for p in range(base, base + count) if not _free(host, p)), None)
            if taken is None:
                self.next = base + count
                return base
            tried += taken + 1 - base
            self.next = taken + 1
        raise RuntimeError(f"no block of {count} free ports in {start}-{stop} on {host}")


_blocks = _Ports(*BLOCK_PORTS)
_singles = _Ports(*SINGLE_PORTS)


def find_free_port(host: str = "127.0.0.1") -> int:
    """A loopback port that is free for both TCP and UDP right now, of this worker's own.

    Another process may still take it before the caller binds; good enough for tests.
    """
    return _singles.take(1, host)


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it to get a loopback port free for TCP and UDP."""
    return find_free_port


def find_free_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive loopback ports free for TCP and UDP right now, of
    this worker's own."""
    return _blocks.take(count, host)


def _free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


@pytest.fixture
def free_block() -> Callable[[int], int]:
    """Call it with a count to get the first of that many consecutive free loopback ports."""
    return find_free_block


@pytest.fixture(scope="session")
def sim_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """conduit-sim:local, built locally once per session (no registry is reachable).

    `make test` builds it before pytest starts; here each xdist worker builds it again (a
    cached no-op then) one at a time, under a lock in the directory the workers share, so
    two never debootstrap or build at once.
    """
    docker = pytest.importorskip("docker")
    try:
        docker.from_env(timeout=30).ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no docker daemon answers ({exc}); `make test` starts one")
    from conduitctl.runtime.sim_image import build_image

    with _locked(tmp_path_factory.getbasetemp().parent / "conduit-sim-build.lock"):
        return build_image("conduit-sim:local")


@pytest.fixture
def webhook() -> Iterator[Any]:
    """A webhook receiver on 127.0.0.1 (fleet_helpers.Webhook), closed after the test."""
    from fleet_helpers import Webhook  # tests/integration: on sys.path for its tests

    receiver = Webhook()
    yield receiver
    receiver.close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` for the `with` block: other processes wait for it."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
