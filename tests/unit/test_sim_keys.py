"""conduit_key.json: format, creation (0600, atomic), never rewritten, corrupt = refuse."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from conduitctl.sim.keys import KeyFileError, key_document, load_or_create_key, new_key, parse_key


def test_new_key_has_conduits_64_byte_layout() -> None:
    key = new_key(b"\x01" * 32)
    assert len(key.private_key) == 64
    assert key.private_key[32:] == key.public_key
    assert key == new_key(b"\x01" * 32)  # derived deterministically from the seed
    assert len(key.station_id) == 16


def test_document_round_trips_and_is_unpadded_like_conduit() -> None:
    key = new_key()
    doc = json.loads(key_document(key))
    assert not doc["privateKeyBase64"].endswith("=")
    assert parse_key(key_document(key)) == key


def test_reads_a_real_conduit_key_padded_or_not() -> None:
    raw = bytes(range(64))
    for text in (base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("=")):
        key = parse_key(json.dumps({"mnemonic": "word " * 12, "privateKeyBase64": text}))
        assert key.public_key == raw[32:]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"mnemonic": "x"}',
        '{"privateKeyBase64": 5}',
        '{"privateKeyBase64": "!!!"}',
        '{"privateKeyBase64": "AAAA"}',  # 3 bytes
    ],
)
def test_parse_key_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_key(text)


def test_create_then_load_same_key(tmp_path: Path) -> None:
    path = tmp_path / "data" / "conduit_key.json"
    key, created = load_or_create_key(path)
    assert created
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    content = path.read_bytes()
    again, created_again = load_or_create_key(path)
    assert (again, created_again) == (key, False)
    assert path.read_bytes() == content
    assert [p.name for p in path.parent.iterdir()] == ["conduit_key.json"]  # no temp left


def test_corrupt_key_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "conduit_key.json"
    path.write_text('{"privateKeyBase64": "short"}')
    with pytest.raises(KeyFileError, match="corrupt"):
        load_or_create_key(path)
    assert path.read_text() == '{"privateKeyBase64": "short"}'
