"""Back up and restore the station identity keys (``conduit_key.json``).

The key is a station's identity and reputation: a lost key is a new station. ``backup`` copies
every backend's key to DEST/<timestamp>/<backend>.conduit_key.json (0600 files, 0700 dirs)
with a manifest.json of sha256 digests, and verifies each copy by reading it back. ``restore``
writes the keys of the newest backup back into the backends' data, refusing to replace a
different key unless forced and refusing to touch a running backend (it reads the key at start).

Where the key lives is the runtime's business (`Runtime.key_store`): STATE_DIR/process/NAME/
data/ for the process runtime (runtime/process.py), the named volume {cluster}-data-{i} for
the docker runtime (runtime/docker_keys.py).

Pure helpers (names, manifest, decisions) come first; backup and restore follow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.runtime.base import (
    KEY_FILE,
    KeyStore,
    Runtime,
    key_problem,
    read_key_file,
    write_key_file,
)
from conduitctl.settings import Settings
from conduitctl.statedir import StateDir

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SUFFIX = f".{KEY_FILE}"

# --- pure helpers ---------------------------------------------------------------------------


def default_dir(settings: Settings) -> Path:
    """Where backups go unless a directory is given: STATE_DIR/keys."""
    return StateDir(settings.state_dir).key_backups


def stamp(now: float) -> str:
    """The backup directory name for unix time `now` (UTC, sorts by time)."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")


def backup_file_name(backend: str) -> str:
    return f"{backend}{SUFFIX}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stamp_order(name: str) -> tuple[str, int]:
    head, _, tail = name.partition("-")
    return head, int(tail) if tail.isdigit() else 0


def free_stamp_dir(root: Path, now: float) -> Path:
    """root/<stamp>, or root/<stamp>-2, -3... when a backup of the same second exists."""
    base = stamp(now)
    candidate, n = root / base, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{base}-{n}"
    return candidate


def latest_backup(directory: Path) -> Path | None:
    """The newest backup under `directory` (a dir holding manifest.json), or None.

    `directory` may itself be a backup (it holds manifest.json): then it is the answer.
    """
    if (directory / MANIFEST).is_file():
        return directory
    if not directory.is_dir():
        return None
    found = [d for d in directory.iterdir() if d.is_dir() and (d / MANIFEST).is_file()]
    return max(found, key=lambda d: _stamp_order(d.name)) if found else None


def all_backups(directory: Path) -> list[Path]:
    """Every backup under `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [d for d in directory.iterdir() if d.is_dir() and (d / MANIFEST).is_file()]
    return sorted(found, key=lambda d: _stamp_order(d.name))


@dataclass(frozen=True)
class Manifest:
    """What a backup holds: backend -> sha256 of its key, and the backends with no key yet."""

    cluster: str
    runtime: str
    created_at: float
    keys: dict[str, str]
    no_key: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "version": MANIFEST_VERSION,
            "cluster": self.cluster,
            "runtime": self.runtime,
            "created_at": self.created_at,
            "created": datetime.fromtimestamp(self.created_at, UTC).isoformat(),
            "keys": dict(sorted(self.keys.items(), key=lambda kv: _name_order(kv[0]))),
            "no_key": list(self.no_key),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def parse_manifest(text: str, where: Path | str = MANIFEST) -> Manifest:
    """Read a manifest.json.

    Raises:
        BadInput: not JSON, or keys is not a map of backend -> 64 hex digits.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where}: not JSON ({exc.msg}); use another backup directory") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _is_sha256(v) for k, v in keys.items()
    ):
        raise BadInput(f"{where}: keys is not a map of backend -> sha256; use another backup")
    no_key = doc.get("no_key", [])
    return Manifest(
        cluster=str(doc.get("cluster", "")),
        runtime=str(doc.get("runtime", "")),
        created_at=float(doc.get("created_at", 0.0)),
        keys=dict(keys),
        no_key=tuple(str(n) for n in no_key) if isinstance(no_key, list) else (),
    )


def check_belongs(manifest: Manifest, cluster: str, where: Path | str) -> None:
    """A backup restores into its own cluster only, and names nothing but its backends
    (`{cluster}-{index}`): a name is a file and a volume, never a path.

    Raises:
        BadInput: another cluster's backup, or a name that is not one of its backends.
    """
    if manifest.cluster != cluster:
        raise BadInput(
            f"{where} is a backup of cluster {manifest.cluster or '(unnamed)'!r}, not of "
            f"{cluster!r}; pass this cluster's backup (keys backup writes one)"
        )
    pattern = re.compile(rf"{re.escape(cluster)}-[1-9][0-9]{{0,2}}")
    strange = [n for n in (*manifest.keys, *manifest.no_key) if not pattern.fullmatch(n)]
    if strange:
        raise BadInput(
            f"{where}: {strange[0]!r} is not a backend of {cluster} ({cluster}-1, "
            f"{cluster}-2...); restore from a backup `keys backup` wrote"
        )


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _name_order(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


class Change(StrEnum):
    """How a backend's current key compares with the one to restore."""

    ABSENT = "absent"  # no key: restore writes it
    IDENTICAL = "identical"  # same bytes: nothing to do
    DIFFERENT = "different"  # another identity: only with force


def compare(current: bytes | None, wanted: bytes) -> Change:
    if current is None:
        return Change.ABSENT
    return Change.IDENTICAL if current == wanted else Change.DIFFERENT


class Status(StrEnum):
    BACKED_UP = "backed up"
    NO_KEY = "no key yet"
    RESTORED = "restored"
    REPLACED = "replaced"  # a different key was overwritten (force); the old one was kept
    UNCHANGED = "unchanged"  # the key there is already identical


@dataclass(frozen=True)
class KeyEntry:
    backend: str
    status: Status
    sha256: str | None = None
    path: Path | None = None  # the backup copy (backup) or the one restored from (restore)
    saved_old: Path | None = None  # restore --force: where the replaced key was kept

    def to_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "status": self.status.value,
            "sha256": self.sha256,
            "path": str(self.path) if self.path else None,
            "saved_old": str(self.saved_old) if self.saved_old else None,
        }


@dataclass(frozen=True)
class KeysReport:
    action: str  # backup | restore
    directory: Path  # the backup directory written or read
    entries: list[KeyEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "directory": str(self.directory),
            "entries": [e.to_dict() for e in self.entries],
        }


def restore_refusal(
    backend: str, change: Change, running: bool, force: bool, force_hint: str = "--force"
) -> str | None:
    """Why this backend's key must not be restored now (one line naming the fix), or None."""
    if change == Change.IDENTICAL:
        return None  # a no-op is safe even while it runs
    if running:
        return (
            f"{backend} is running and reads its key only at start; stop it first "
            "(conduitctl down), then restore"
        )
    if change == Change.DIFFERENT and not force:
        return (
            f"{backend} already has a different key (another identity); pass {force_hint} to "
            "replace it (the current key is kept next to the backups)"
        )
    return None


# --- where keys live: one store per runtime (Runtime.key_store) ---------------------------


def store_for(settings: Settings, runtime: Runtime | None = None) -> KeyStore:
    """The key store of the configured runtime."""
    from conduitctl.runtime import runtime_for

    runtime = runtime if runtime is not None else runtime_for(settings)
    return runtime.key_store(settings)


def _backends(settings: Settings, store: KeyStore) -> list[str]:
    """The desired backends and every other one that still has data, in index order."""
    names = set(settings.backend_names()) | set(store.names())
    return sorted(names, key=_name_order)


# --- backup -----------------------------------------------------------------------------------


def backup(
    settings: Settings,
    dest: Path | None = None,
    now: float | None = None,
    *,
    store: KeyStore | None = None,
) -> KeysReport:
    """Copy every backend's key to DEST/<timestamp>/ and verify each copy by reading it back.

    Side effects: creates the backup directory (0700) with one 0600 file per key and a
    manifest.json (backend -> sha256). Backends with no key yet are listed, not an error.

    Raises:
        ConduitctlError: a copy read back differs from its source (the backup is left in
            place for inspection), or a key or the destination cannot be read or written.
    """
    store = store if store is not None else store_for(settings)
    root = dest if dest is not None else default_dir(settings)
    now = time.time() if now is None else now
    sources: dict[str, bytes] = {}
    no_key: list[str] = []
    for name in _backends(settings, store):
        data = store.read(name)
        if data is None:
            no_key.append(name)
        else:
            sources[name] = data
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = free_stamp_dir(root, now)
        target.mkdir(mode=0o700)
        os.chmod(target, 0o700)  # whatever the umask
    except OSError as exc:
        raise ConduitctlError(
            f"cannot create a backup under {root}: {exc.strerror}; pass another DIR"
        ) from None
    entries: list[KeyEntry] = []
    digests: dict[str, str] = {}
    for name, data in sources.items():
        path = target / backup_file_name(name)
        write_key_file(path, data)
        digest = sha256_hex(data)
        copied = read_key_file(path)
        if copied is None or sha256_hex(copied) != digest:
            raise ConduitctlError(
                f"{name}: the backup copy {path} does not match the key read back; check the "
                f"disk under {root} and run the backup again"
            )
        digests[name] = digest
        entries.append(KeyEntry(name, Status.BACKED_UP, digest, path))
    entries += [KeyEntry(name, Status.NO_KEY) for name in no_key]
    manifest = Manifest(
        settings.cluster.name, settings.cluster.runtime, now, digests, tuple(no_key)
    )
    write_key_file(target / MANIFEST, manifest.dumps().encode())
    entries.sort(key=lambda e: _name_order(e.backend))
    return KeysReport("backup", target, entries)


# --- restore ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreStep:
    backend: str
    data: bytes
    sha256: str
    source: Path
    change: Change


def load_backup(
    directory: Path, only: Iterable[str] | None = None
) -> dict[str, tuple[bytes, Path]]:
    """The keys of one backup, each checked against its manifest digest.

    Raises:
        BadInput: a copy is missing or its bytes do not match the manifest (a damaged backup).
    """
    manifest = parse_manifest((directory / MANIFEST).read_text(), directory / MANIFEST)
    wanted = list(only) if only is not None else list(manifest.keys)
    keys: dict[str, tuple[bytes, Path]] = {}
    for name in wanted:
        path = directory / backup_file_name(name)
        data = read_key_file(path)
        if data is None:
            raise BadInput(f"{path} is missing though manifest.json lists it; use another backup")
        if sha256_hex(data) != manifest.keys[name]:
            raise BadInput(
                f"{path} does not match its sha256 in manifest.json (a damaged copy); "
                "restore from another backup"
            )
        keys[name] = (data, path)
    return keys


def restore(
    settings: Settings,
    src: Path | None = None,
    *,
    backend: str | None = None,
    force: bool = False,
    store: KeyStore | None = None,
    now: float | None = None,
) -> KeysReport:
    """Write the keys of the newest backup under SRC (or SRC itself) back into the backends.

    Every backend is checked before anything is written: a running backend or a different key
    there (without `force`) refuses the whole restore. Identical keys are left alone. Each key
    written is read back and compared. With `force`, a replaced key is first saved under
    SRC/replaced-<timestamp>/ so no identity is lost.

    Raises:
        BadInput: no backup, an unknown `backend`, a damaged backup, a running backend, or a
            different key without `force` (the message names the fix).
        ConduitctlError: a key read back differs from what was written.
    """
    store = store if store is not None else store_for(settings)
    root = src if src is not None else default_dir(settings)
    directory = latest_backup(root)
    if directory is None:
        raise BadInput(f"no backup under {root}; run `conduitctl keys backup` first")
    manifest = parse_manifest((directory / MANIFEST).read_text(), directory / MANIFEST)
    check_belongs(manifest, settings.cluster.name, directory)
    if backend is not None and backend not in manifest.keys:
        known = ", ".join(sorted(manifest.keys, key=_name_order)) or "none"
        raise BadInput(f"--backend {backend}: {directory} holds no key for it (it has: {known})")
    keys = load_backup(directory, [backend] if backend is not None else None)

    steps: list[RestoreStep] = []
    refusals: list[str] = []
    for name in sorted(keys, key=_name_order):
        data, path = keys[name]
        change = compare(store.read(name), data)
        why = restore_refusal(
            name, change, change != Change.IDENTICAL and store.running(name), force
        )
        if why:
            refusals.append(why)
        steps.append(RestoreStep(name, data, sha256_hex(data), path, change))
    if refusals:
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        raise BadInput(f"restore refused: {refusals[0]}{more}")

    entries: list[KeyEntry] = []
    saved_dir = root / f"replaced-{stamp(time.time() if now is None else now)}"
    for step in steps:
        if step.change == Change.IDENTICAL:
            entries.append(KeyEntry(step.backend, Status.UNCHANGED, step.sha256, step.source))
            continue
        saved: Path | None = None
        if step.change == Change.DIFFERENT:
            old = store.read(step.backend)
            if old is not None:
                saved_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                saved = saved_dir / backup_file_name(step.backend)
                write_key_file(saved, old)
        store.write(step.backend, step.data)
        back = store.read(step.backend)
        if back is None or sha256_hex(back) != step.sha256:
            raise ConduitctlError(
                f"{step.backend}: the key read back after the restore differs from "
                f"{step.source}; do not start it, check its data and restore again"
            )
        status = Status.REPLACED if step.change == Change.DIFFERENT else Status.RESTORED
        entries.append(KeyEntry(step.backend, status, step.sha256, step.source, saved))
    return KeysReport("restore", directory, entries)


# --- for `up`: refuse to start a backend that would make itself a new identity ---------------


def broken_keys(names: Iterable[str], store: KeyStore) -> dict[str, str]:
    """Backends whose data holds a key file that does not parse: name -> why."""
    found: dict[str, str] = {}
    for name in names:
        data = store.read(name)
        why = None if data is None else key_problem(data)
        if why is not None:
            found[name] = why
    return found


def would_regenerate(
    settings: Settings, *, store: KeyStore | None = None, backups: Path | None = None
) -> list[str]:
    """Desired backends whose data has no key while a backup of them exists.

    Starting them would create a new identity although the old one could be restored.
    """
    directory = backups if backups is not None else default_dir(settings)
    backed_up: set[str] = set()
    for backup_dir in all_backups(directory):
        with contextlib.suppress(OSError, BadInput):
            backed_up |= set(parse_manifest((backup_dir / MANIFEST).read_text()).keys)
    if not backed_up:
        return []
    store = store if store is not None else store_for(settings)
    return [
        name for name in settings.backend_names() if name in backed_up and store.read(name) is None
    ]
