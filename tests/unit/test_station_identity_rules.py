"""Who answers on a station's port: the greeting must name it, and the listening socket must
be held by its own process (real sockets of this test process, read from the kernel)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from conduitctl.observe.owner import stolen_ports
from conduitctl.observe.probe import check_greeting

PREFIX, BUSY = "CONDUIT-SIM ", "BUSY "


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        ("CONDUIT-SIM c-1 0123abcd", True),
        ("BUSY c-1", True),  # full, but it is our station answering
        ("CONDUIT-SIM c-2 0123abcd", False),  # a station, not this one
        ("BUSY intruder", False),
        ("CONDUIT-SIM", False),
        ("SSH-2.0-OpenSSH_9.2", False),
        ("", False),
    ],
)
def test_the_greeting_must_name_the_station(line: str, ok: bool) -> None:
    if ok:
        check_greeting(line, PREFIX, BUSY, "c-1")
    else:
        with pytest.raises(ValueError):
            check_greeting(line, PREFIX, BUSY, "c-1")


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def other() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "30"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_port_held_by_the_station_process_is_not_stolen(listener: int) -> None:
    assert stolen_ports("127.0.0.1", [listener], os.getpid()) == []


def test_a_port_held_by_another_process_is_stolen_and_the_holder_named(
    listener: int, other: int
) -> None:
    [found] = stolen_ports("127.0.0.1", [listener], other)
    assert found.port == listener and found.holder_pid == os.getpid()
    assert f"pid {os.getpid()}" in str(found)
    [again] = stolen_ports("127.0.0.1", [listener], None)  # the station runs no process
    assert again.holder_pid == os.getpid()


def test_a_port_nobody_listens_on_is_not_stolen(other: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening
        port = sock.getsockname()[1]
    assert stolen_ports("127.0.0.1", [port], other) == []


def test_the_station_child_holding_the_port_is_ours(listener: int) -> None:
    parent = subprocess.Popen(["sleep", "30"])
    try:  # this process is a child of neither: only the station's own family counts
        assert stolen_ports("127.0.0.1", [listener], parent.pid) != []
        assert stolen_ports("127.0.0.1", [listener], os.getppid()) == []
    finally:
        parent.kill()
        parent.wait()
