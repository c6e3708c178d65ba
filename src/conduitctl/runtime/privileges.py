"""Who a process backend runs as, and whether that user can reach what it needs.

Run as root, conduitctl starts each process backend as `container.user` (the shim drops to
it just before exec: no supplementary groups, that gid and uid, an empty capability bounding
set, no_new_privs), with its data dir and key handed over (`hand_over`, by descriptor:
that user owns the dir and could swap any path in it). `container.user = "0:0"` keeps root,
and is refused unless `container.allow_weak_hardening` says so. Run as another user, the
backends run as that user: it cannot become anyone else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conduitctl.errors import ConduitctlError
from conduitctl.runtime.base import KEY_FILE

# What a backend run as another user gets of conduitctl's environment (and CONDUIT_*).
PASSED_ENV = frozenset(
    {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "PYTHONUNBUFFERED",
     "PYTHONDONTWRITEBYTECODE"}
)  # fmt: skip


def run_as(user: str, euid: int | None = None) -> tuple[int, int] | None:
    """(uid, gid) to drop to for `user` ("UID" or "UID:GID"); None: stay who we are (we
    are not root, or `user` is root)."""
    if (os.geteuid() if euid is None else euid) != 0:
        return None
    uid_text, _, gid_text = user.partition(":")
    uid = int(uid_text)
    gid = int(gid_text) if gid_text else uid
    return None if uid == 0 else (uid, gid)


def _allows(st: os.stat_result, uid: int, gid: int, bits: int) -> bool:
    """Whether uid:gid (no supplementary groups) has every one of `bits` (r=4, w=2, x=1)."""
    if st.st_uid == uid:
        shift = 6
    elif st.st_gid == gid:
        shift = 3
    else:
        shift = 0
    return (st.st_mode >> shift) & bits == bits


def closed_to(path: Path, uid: int, gid: int, *, bits: int) -> str | None:
    """Why uid:gid cannot reach `path` with `bits` on it (r=4, x=1: read or run it), naming
    the first directory or file in the way; None when it can. A part that does not exist
    yet is not in the way: it is created as the parent allows."""
    target = Path(os.path.realpath(path))
    parts = [*reversed(target.parents), target]
    for i, part in enumerate(parts):
        try:
            st = os.stat(part)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"{part}: {exc.strerror}"
        last = i == len(parts) - 1
        wanted = bits if last else 1  # directories on the way: search (x) only
        if not _allows(st, uid, gid, wanted):
            kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
            mode = stat.filemode(st.st_mode)
            return f"{kind} {part} ({mode}, {st.st_uid}:{st.st_gid}) is closed to it"
    return None


def hand_over(data: Path, uid: int, gid: int) -> None:
    """The data dir and its identity key, to the backend's user: it reads and rewrites its
    key as that user. Done by file descriptor, never by path, and nothing else in the dir
    is touched: that user owns the dir, and a path it can swap (a link, a directory put
    in place mid-walk, a hard link to a root file) must never make root chown something
    else.

    Raises ConduitctlError when the key is not a plain file of its own."""
    try:
        dfd = os.open(data, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConduitctlError(
            f"{data}: {exc.strerror}; it must be a directory, not a link"
        ) from None
    try:
        if os.fstat(dfd).st_uid != uid:
            os.fchown(dfd, uid, gid)
        try:
            kfd = os.open(KEY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=dfd)  # fmt: skip
        except FileNotFoundError:
            return  # a new station: it writes its own key, as its user
        except OSError as exc:
            raise ConduitctlError(
                f"{data / KEY_FILE}: {exc.strerror}; move it aside and check who put it there"
            ) from None
        try:
            st = os.fstat(kfd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise ConduitctlError(
                    f"{data / KEY_FILE} is not a plain key file (a special file, or linked "
                    "elsewhere too); move it aside and check who put it there"
                )
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.fchown(kfd, uid, gid)
        finally:
            os.close(kfd)
    finally:
        os.close(dfd)
