"""The status fast path's pure parts: which command lines it takes, the request line both
ways, the config file's identity, and which run directory it trusts."""

from __future__ import annotations

import os

import pytest

from conduitctl import fast_status
from conduitctl import status_wire as wire

IDENTITY = "64768:1234:1700000000000000000:512"
HEAD = b"status\t1\t" + IDENTITY.encode()


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["status"], (None, False)),
        (["status", "--json"], (None, True)),
        (["status", "-c", "/etc/x.toml"], ("/etc/x.toml", False)),
        (["status", "--config", "a.toml", "--json"], ("a.toml", True)),
        (["status", "--json", "--config=a.toml"], ("a.toml", True)),
    ],
)
def test_the_plain_status_command_lines_are_taken(argv, parsed):
    assert fast_status.parse(argv) == parsed


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["up"],
        ["status", "--watch"],
        ["status", "--direct"],
        ["status", "--help"],
        ["status", "-c"],  # the full CLI explains what is missing
        ["status", "-c", "--json"],
        ["status", "--config="],
        ["status", "-c", "a.toml", "-c", "b.toml"],
        ["status", "--json", "--json"],
        ["status", "extra"],
    ],
)
def test_any_other_command_line_goes_to_the_full_cli(argv):
    assert fast_status.parse(argv) is None


def test_a_request_travels_both_ways():
    env = {"TERM": "xterm-256color", "NO_COLOR": "1"}
    line = wire.encode_request(
        IDENTITY, as_json=False, tty=True, width=132, encoding="utf-8", env=env
    )
    assert line is not None and line.endswith(b"\n") and line.count(b"\n") == 1
    assert wire.decode_request(line) == {
        "identity": IDENTITY, "json": False, "tty": True, "width": 132,
        "encoding": "utf-8", "env": env,
    }  # fmt: skip


@pytest.mark.parametrize("env", [{"TERM": "a\tb"}, {"TERM": "a\nb"}, {"TERM": "x" * 5000}])
def test_a_value_that_cannot_travel_on_one_line_is_not_sent(env):
    assert (
        wire.encode_request(IDENTITY, as_json=True, tty=False, width=80, encoding="utf-8", env=env)
        is None
    )


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"up" + HEAD[6:] + b"\t0\t0\t80\tutf-8\n", "not a status request"),
        (b"status\t9\t" + IDENTITY.encode() + b"\t0\t0\t80\tutf-8\n", "not a status request"),
        (b"status\t1\t1:2:x:4\t0\t0\t80\tutf-8\n", "bad config identity"),
        (HEAD + b"\t2\t0\t80\tutf-8\n", "bad flag"),
        (HEAD + b"\t0\t0\t99999\tutf-8\n", "bad width"),
        (HEAD + b"\t0\t0\t80\tutf 8;\n", "bad encoding"),
        (
            HEAD + b"\t0\t0\t80\tutf-8\tPATH=/x\n",
            "bad environment entry",
        ),
        (
            HEAD + b"\t0\t0\t80\tutf-8\tTERM=\x1b[2J\n",
            "bad environment entry",
        ),
        (b"status\t1\t\xff\n", "utf-8"),
    ],
)
def test_the_supervisor_refuses_a_malformed_request(line, why):
    with pytest.raises(ValueError, match=why):
        wire.decode_request(line)


def test_the_identity_follows_every_kind_of_change(tmp_path):
    config = tmp_path / "conduit.toml"
    config.write_text("[cluster]\n")
    first = wire.config_identity(str(config))
    assert first is not None and first == wire.config_identity(str(config))
    with config.open("a") as handle:  # an edit in place: same inode, new size and mtime
        handle.write("# more\n")
    edited = wire.config_identity(str(config))
    assert edited != first and edited.split(":")[:2] == first.split(":")[:2]
    replacement = tmp_path / "new.toml"
    replacement.write_text(config.read_text())
    os.replace(replacement, config)  # how conduitctl writes it: a new inode
    replaced = wire.config_identity(str(config))
    assert replaced is not None and replaced.split(":")[1] != edited.split(":")[1]
    assert wire.link_for(replaced) != wire.link_for(edited)
    assert wire.config_identity(str(tmp_path / "missing.toml")) is None


def test_only_a_run_directory_nobody_else_writes_in_is_trusted(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    uid = os.geteuid()
    assert wire.run_dir_trusted(uid, str(run))
    run.chmod(0o777)
    assert not wire.run_dir_trusted(uid, str(run))
    run.chmod(0o755)
    os.chown(run, 65534, 65534)
    assert not wire.run_dir_trusted(uid, str(run))  # another user's
    os.chown(run, uid, -1)
    link = tmp_path / "link"
    link.symlink_to(run)
    assert not wire.run_dir_trusted(uid, str(link))  # a link to somewhere else
    assert not wire.run_dir_trusted(uid, str(tmp_path / "absent"))


def test_into_a_pipe_the_width_is_the_full_commands():
    assert fast_status.terminal_width(tty=False) == fast_status.NOT_A_TTY_WIDTH == 160


def test_only_a_whole_ok_reply_is_printed():
    assert wire.payload_of(b"ok 5\nhello") == b"hello"
    assert wire.payload_of(b"ok 0\n") == b""
    assert wire.payload_of(b"ok 9\nhello") is None  # cut short: the supervisor died writing
    assert wire.payload_of(b"ok 2\nhello") is None
    assert wire.payload_of(b"ok\nhello") is None
    assert wire.payload_of(b"stale\n") is None and wire.payload_of(b"busy\n") is None
    assert wire.payload_of(b"") is None


def test_an_environment_entry_comes_once():
    line = HEAD + b"\t0\t0\t80\tutf-8\tTERM=xterm\tTERM=dumb\n"
    with pytest.raises(ValueError, match="bad environment entry"):
        wire.decode_request(line)
