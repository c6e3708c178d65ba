"""The one-line error's own helpers: overlong values shortened, a non-UTF-8 file located."""

from __future__ import annotations

from conduitctl.errors import not_utf8, shorten


def test_an_overlong_value_keeps_its_start_end_length_and_the_sentence_punctuation():
    value = "c-" + "9" * 5000
    text = shorten(f"no backend named {value}; choose one of: c-1, c-2")
    assert text == (
        f"no backend named {value[:30]}...{value[-10:]} (5002 characters); choose one of: c-1, c-2"
    )


def test_paths_and_ordinary_words_are_left_whole():
    path = "/srv/" + "deep/" * 40 + "conduit.toml"  # 217 characters: a real, long path
    message = f"{path}: cannot read config (Permission denied); check its permissions"
    assert shorten(message) == message
    assert "(5005 characters)" in shorten("/" + "a" * 5004)


def test_a_non_utf8_file_is_located_by_line_and_byte_never_quoted():
    data = b"CONTAINERS=3\nTELEGRAM_BOT_TOKEN=12\xff34secret\n"
    try:
        data.decode()
    except UnicodeDecodeError as exc:
        message = not_utf8("settings.conf", data, exc)
    assert message == "settings.conf: not UTF-8 text (byte 0xff on line 2); save it as UTF-8"
    assert "secret" not in message and "12" not in message
