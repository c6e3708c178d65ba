"""Who a process backend runs as, and whether that user can reach a path (pure, on stat)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conduitctl.runtime.privileges import closed_to, run_as
from conduitctl.runtime.shim import parse_user


@pytest.mark.parametrize(
    ("user", "euid", "expected"),
    [
        ("1000:1000", 0, (1000, 1000)),
        ("1000", 0, (1000, 1000)),  # the gid defaults to the uid
        ("65534:100", 0, (65534, 100)),
        ("0:0", 0, None),  # root stays root (the named opt-out)
        ("0", 0, None),
        ("1000:1000", 1000, None),  # not root: cannot become anyone else
    ],
)
def test_run_as(user, euid, expected):
    assert run_as(user, euid=euid) == expected


def test_the_shim_reads_the_same_user():
    assert parse_user("1000:1000") == (1000, 1000) and parse_user("7") == (7, 7)


@pytest.fixture
def open_tmp():
    """A directory others may enter (pytest's own is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="conduitctl-closed-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_closed_to_names_the_first_part_in_the_way(open_tmp):
    tmp_path = open_tmp
    top = tmp_path / "top"
    inner = top / "inner"
    inner.mkdir(parents=True)
    program = inner / "program"
    program.write_text("#!/bin/sh\n")
    tmp_path.chmod(0o755)
    top.chmod(0o755)
    inner.chmod(0o755)
    program.chmod(0o755)
    assert closed_to(program, 1000, 1000, bits=1) is None
    program.chmod(0o700)
    assert "file " + str(program) in (closed_to(program, 1000, 1000, bits=1) or "")
    assert closed_to(program, 0, 0, bits=1) is None  # its owner may
    os.chown(program, 1000, 0)
    assert closed_to(program, 1000, 1000, bits=1) is None  # now it is theirs
    inner.chmod(0o750)
    os.chown(inner, 0, 1000)
    assert closed_to(program, 1000, 1000, bits=1) is None  # through its group
    assert "directory " + str(inner) in (closed_to(program, 1001, 1001, bits=1) or "")
    link = tmp_path / "link"
    link.symlink_to(program)
    assert "directory " + str(inner) in (closed_to(link, 1001, 1001, bits=1) or "")  # followed
    assert closed_to(inner / "not-yet" / "data", 1000, 1000, bits=1) is None  # made as needed
