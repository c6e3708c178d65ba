"""The status socket's few shared facts: where the link to a running supervisor's socket
lives, the request line and the reply's first line. The client side runs before anything
else is imported (conduitctl.fast_status), so this module uses `os` and nothing more.

A supervisor started from a config file links `RUN_DIR/status-DEV-INO.sock` (the file's
device and inode) to the socket in its state dir. `status` finds it by statting the same
file, with no TOML parsed. The request carries the file's identity (device, inode, mtime,
size); a supervisor whose settings came from another version of the file answers STALE,
and the client reads the fleet itself."""

from __future__ import annotations

import os

RUN_DIR = "/run/conduitctl"
VERSION = "1"
MAX_REQUEST = 4096  # bytes: one line
# What rich reads to colour the output (besides whether stdout is a terminal).
PASSED_ENV = ("TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
OK, STALE, BUSY = b"ok", b"stale", b"busy"  # the reply's first line: "ok LENGTH", or a word


def config_identity(path: str) -> str | None:
    """device:inode:mtime_ns:size of the config file (following links); None if unreadable.
    An atomic replace (how conduitctl writes it) changes the inode, an edit the mtime."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


def link_for(identity: str) -> str:
    dev, ino = identity.split(":")[:2]
    return f"{RUN_DIR}/status-{dev}-{ino}.sock"


def run_dir_trusted(uid: int, path: str = RUN_DIR) -> bool:
    """RUN_DIR is a directory of root's or ours that nobody else may write in: a link found
    there was put there by one of our supervisors, never planted."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_mode & 0o170000) == 0o040000 and st.st_uid in (0, uid) and not st.st_mode & 0o022


def encode_request(
    identity: str, *, as_json: bool, tty: bool, width: int, encoding: str, env: dict[str, str]
) -> bytes | None:
    """One line of tab-separated fields; None when a value cannot travel on it."""
    fields = ["status", VERSION, identity, "1" if as_json else "0", "1" if tty else "0",
              str(width), encoding] + [f"{k}={v}" for k, v in env.items()]  # fmt: skip
    line = "\t".join(fields)
    if any(c in line for c in "\n\r\0") or any("\t" in v for v in env.values()):
        return None
    data = (line + "\n").encode("utf-8", "surrogateescape")
    return data if len(data) <= MAX_REQUEST else None


def decode_request(line: bytes) -> dict[str, object]:
    """The request's fields, checked; ValueError names what is wrong."""
    text = line.decode("utf-8", "strict").rstrip("\n")
    fields = text.split("\t")
    if len(fields) < 7 or fields[0] != "status" or fields[1] != VERSION:
        raise ValueError("not a status request of this version")
    identity, as_json, tty, width, encoding = fields[2:7]
    parts = identity.split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError("bad config identity")
    if as_json not in ("0", "1") or tty not in ("0", "1"):
        raise ValueError("bad flag")
    if not width.isdigit() or not 20 <= int(width) <= 1000:
        raise ValueError("bad width")
    if not encoding or len(encoding) > 40 or not all(c.isalnum() or c in "-_" for c in encoding):
        raise ValueError("bad encoding")
    env: dict[str, str] = {}
    for pair in fields[7:]:
        key, sep, value = pair.partition("=")
        bad = not sep or key not in PASSED_ENV or key in env
        if bad or len(value) > 200 or not value.isprintable():
            raise ValueError(f"bad environment entry {key!r}")
        env[key] = value
    return {"identity": identity, "json": as_json == "1", "tty": tty == "1",
            "width": int(width), "encoding": encoding, "env": env}  # fmt: skip


def payload_of(reply: bytes) -> bytes | None:
    """The output in an "ok LENGTH" reply, whole; None for any other reply, or a short one
    (a supervisor killed while it wrote)."""
    head, sep, payload = reply.partition(b"\n")
    word, _, length = head.partition(b" ")
    if word != OK or not sep or not length.isdigit() or int(length) != len(payload):
        return None
    return payload
