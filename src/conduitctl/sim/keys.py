"""The station identity file ``conduit_key.json`` (stdlib only).

Conduit stores ``{"mnemonic": ..., "privateKeyBase64": ...}`` (an Ed25519 key, unpadded
base64) with mode 0600 and the broker tracks reputation by it, so losing or rewriting it
resets the station. The simulator writes the same shape (no mnemonic: the BIP-39 word list is
not in the stdlib) and reads real Conduit keys too. Unlike Conduit, which silently makes a new
key when the file does not parse, the simulator refuses to start: the file is an identity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .config import SimError

SEED_BYTES = 32
# Ed25519 private keys in Go are seed || public key.
PRIVATE_KEY_BYTES = 64


class KeyFileError(SimError):
    """``conduit_key.json`` exists but is not a usable key; it is left untouched."""


@dataclass(frozen=True)
class StationKey:
    private_key: bytes
    public_key: bytes

    @property
    def station_id(self) -> str:
        """Short public id used in the greeting and logs (16 hex digits of the public key)."""
        return self.public_key[:8].hex()

    @property
    def public_key_base64(self) -> str:
        return _b64(self.public_key)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    # Conduit writes RawStdEncoding but reads padded too.
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, validate=True)


def new_key(seed: bytes | None = None) -> StationKey:
    """A new simulated key: a random seed and a public half derived from it by SHA-256.

    Not real Ed25519 (no such primitive in the stdlib), but the same 64-byte layout.
    """
    seed = seed if seed is not None else os.urandom(SEED_BYTES)
    public = hashlib.sha256(b"conduit-sim public key" + seed).digest()
    return StationKey(private_key=seed + public, public_key=public)


def key_document(key: StationKey) -> str:
    doc = {
        "mnemonic": "",
        "privateKeyBase64": _b64(key.private_key),
        "publicKeyBase64": key.public_key_base64,
        "simulated": True,
    }
    return json.dumps(doc, indent=2) + "\n"


def parse_key(text: str) -> StationKey:
    """Read a key document (the simulator's or real Conduit's).

    Raises:
        ValueError: not JSON, no ``privateKeyBase64``, bad base64 or wrong length.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("privateKeyBase64"), str):
        raise ValueError("no privateKeyBase64 string")
    try:
        private = _b64decode(doc["privateKeyBase64"])
    except (binascii.Error, ValueError):
        raise ValueError("privateKeyBase64 is not base64") from None
    if len(private) != PRIVATE_KEY_BYTES:
        raise ValueError(f"privateKeyBase64 holds {len(private)} bytes, expected 64")
    return StationKey(private_key=private, public_key=private[SEED_BYTES:])


def load_or_create_key(path: Path) -> tuple[StationKey, bool]:
    """Load the key at ``path``, or create it (0600) when absent. Returns (key, created).

    Never rewrites an existing file. Creation is atomic (temp file + hard link), so a crash
    mid-write cannot leave a truncated identity, and a concurrent creator wins cleanly.

    Raises:
        KeyFileError: the file exists but cannot be read or parsed.
        SimError: the data directory cannot be created or written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SimError(f"cannot create data dir {path.parent}: {exc.strerror}") from None
    try:
        return _load(path), False
    except FileNotFoundError:
        pass
    key = new_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, key_document(key).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _load(path), False
    except OSError as exc:
        raise SimError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return key, True


def _load(path: Path) -> StationKey:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {path}: {exc}; it was left untouched") from None
    try:
        return parse_key(text)
    except ValueError as exc:
        raise KeyFileError(
            f"{path} is corrupt ({exc}); it was left untouched: restore it from a backup, "
            "or move it away to start with a new identity"
        ) from None
