"""Who a process backend runs as, and whether that user can reach a path (pure, on stat)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conduitctl.errors import ConduitctlError
from conduitctl.runtime.base import MAX_KEY_BYTES, read_key_file
from conduitctl.runtime.privileges import closed_to, hand_over, run_as
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


def test_hand_over_gives_the_dir_and_key_and_nothing_else(open_tmp):
    data = open_tmp / "data"
    data.mkdir(mode=0o700)
    key = data / "conduit_key.json"
    key.write_bytes(b"{}")
    nested = data / "sub"
    nested.mkdir()
    (nested / "other").write_text("x")
    hand_over(data, 1000, 1000)
    assert (data.stat().st_uid, key.stat().st_uid, key.stat().st_gid) == (1000, 1000, 1000)
    assert nested.stat().st_uid == 0 and (nested / "other").stat().st_uid == 0  # no walk


def plant_key(kind: str, key: Path, victim: Path) -> None:
    """What a backend's user could leave at its key's path instead of a key."""
    if kind == "symlink":
        key.symlink_to(victim)
    elif kind == "hardlink":
        os.link(victim, key)
    elif kind == "fifo":
        os.mkfifo(key)  # would hang a plain read
    else:
        key.write_bytes(b"x" * (MAX_KEY_BYTES + 1))


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "fifo"])
def test_hand_over_never_chowns_what_the_user_planted(open_tmp, plant):
    data = open_tmp / "data"
    data.mkdir(mode=0o700)
    victim = open_tmp / "root-only"
    victim.write_text("secret")
    plant_key(plant, data / "conduit_key.json", victim)
    with pytest.raises(ConduitctlError, match=r"conduit_key\.json"):
        hand_over(data, 1000, 1000)
    assert victim.stat().st_uid == 0


def test_hand_over_refuses_a_data_dir_that_is_a_link(open_tmp):
    target = open_tmp / "etc"
    target.mkdir()
    link = open_tmp / "data"
    link.symlink_to(target)
    with pytest.raises(ConduitctlError, match="not a link"):
        hand_over(link, 1000, 1000)
    assert target.stat().st_uid == 0


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "fifo", "huge"])
def test_a_key_is_read_only_from_a_plain_file(tmp_path, plant):
    victim = tmp_path / "shadow"
    victim.write_text("root:$6$secret")
    key = tmp_path / "conduit_key.json"
    plant_key(plant, key, victim)
    with pytest.raises(ConduitctlError):
        read_key_file(key)


def test_a_plain_key_reads_and_a_missing_one_is_none(tmp_path):
    key = tmp_path / "conduit_key.json"
    assert read_key_file(key) is None
    key.write_bytes(b'{"k": 1}')
    assert read_key_file(key) == b'{"k": 1}'


@pytest.mark.parametrize(
    ("user", "outcome"),
    [
        ("00:00", "runs the backends as root"),  # written oddly, still root
        ("1000:0", "in the root group"),
        ("4294967295", "names nobody"),  # -1 to the kernel: setresuid would keep root
        ("0001000:01000", "1000:1000"),
    ],
)
def test_a_user_is_read_as_the_kernel_would(user, outcome):
    from conduitctl.errors import ConfigError
    from conduitctl.settings import settings_from_dict

    try:
        shown = settings_from_dict({"container": {"user": user}}).container.user
    except ConfigError as exc:
        shown = str(exc)
    assert outcome in shown
