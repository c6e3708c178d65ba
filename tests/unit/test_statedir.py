"""The state directory: file names in one place, one atomic writer whose mode follows content."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from conduitctl.settings import load_settings
from conduitctl.statedir import (
    StateDir,
    config_holds_secrets,
    resolve_state_dir,
    write_atomic,
    write_config_copy,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_name_lives_under_the_root_and_none_repeats(tmp_path: Path) -> None:
    files = StateDir(tmp_path)
    names = [
        getattr(files, attr)
        for attr in dir(StateDir)
        if isinstance(getattr(StateDir, attr), property)
    ]
    assert len(names) == len(set(names)) > 15
    assert all(tmp_path in path.parents for path in names)


@pytest.mark.parametrize(("secret", "expected"), [(True, 0o600), (False, 0o644)])
def test_write_atomic_sets_the_mode_from_the_start(
    tmp_path: Path, secret: bool, expected: int
) -> None:
    target = tmp_path / "sub" / "file.json"
    write_atomic(target, "{}", secret=secret)
    assert target.read_text() == "{}" and mode(target) == expected
    write_atomic(target, b"[1]", secret=secret)  # replaced, not appended
    assert target.read_bytes() == b"[1]"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]  # no temp file left


def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, "old", secret=False)
    with pytest.raises(TypeError):
        write_atomic(target, 42, secret=False)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_secret_replacing_a_public_file_is_private(tmp_path: Path) -> None:
    target = tmp_path / "conduit.toml"
    target.write_text("x")
    target.chmod(0o644)
    write_atomic(target, "token", secret=True)
    assert mode(target) == 0o600


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("[cluster]\nname = 'a'\n", False),
        ("[alerts]\nnotifiers = []\n", False),
        ("[alerts]\nnotifiers = ['tgram://TOKEN/CHAT']\n", True),
        ("not toml [[[", True),  # when in doubt, private
        ("alerts = 3\n", True),
    ],
)
def test_config_copies_are_private_when_they_hold_secrets(
    tmp_path: Path, text: str, secret: bool
) -> None:
    assert config_holds_secrets(text) is secret
    write_config_copy(text, tmp_path / "applied.toml")
    assert mode(tmp_path / "applied.toml") == (0o600 if secret else 0o644)


def test_relative_state_dir_is_taken_against_the_config_directory(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "conduit.toml"
    assert resolve_state_dir(Path("st"), config, Path("/d")) == tmp_path / "etc" / "st"
    assert resolve_state_dir(Path("/abs"), config, Path("/d")) == Path("/abs")
    assert resolve_state_dir(None, config, Path("/d")) == Path("/d")


def test_load_settings_anchors_a_relative_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "conf" / "conduit.toml"
    config.parent.mkdir()
    config.write_text('[cluster]\nstate_dir = "state"\n')
    monkeypatch.chdir(tmp_path)  # another cwd (the systemd unit's is /) must not matter
    assert load_settings(config).state_dir == tmp_path / "conf" / "state"


def test_a_rolled_back_conduit_toml_takes_its_mode_from_its_text(tmp_path: Path) -> None:
    """rollback writes an old conduit.toml over a public one: a token in it makes it 0600."""
    from conduitctl.settings_file import replace_config

    path = tmp_path / "conduit.toml"
    path.write_text('[cluster]\nname = "c"\n')
    path.chmod(0o644)
    replace_config('[alerts]\nnotifiers = ["tgram://123:TOKEN/1"]\n', path)
    assert path.stat().st_mode & 0o777 == 0o600
    replace_config('[cluster]\nname = "c"\n', path)  # private stays private
    assert path.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "public.toml"
    fresh.write_text("")
    fresh.chmod(0o644)
    replace_config('[cluster]\nname = "c"\n', fresh)  # no secret: readable, as it was
    assert fresh.stat().st_mode & 0o777 == 0o644
