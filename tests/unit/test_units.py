import pytest

from conduitctl.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 * 1024**2),
        ("1g", 1024**3),
        ("1G", 1024**3),
        ("64MiB", 64 * 1024**2),
        ("1.5g", int(1.5 * 1024**3)),
        (4096, 4096),
        ("100", 100),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "12x", "-5m", "m", True, -1])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500ms", 0.5), ("10s", 10), ("5m", 300), ("4h", 14400), ("1d", 86400), (2, 2.0), ("3", 3)],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["soon", "10 years", "-1s", True])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("n", [1024**2 * 512, 1024**3, 1500, 64 * 1024])
def test_size_round_trips(n):
    assert parse_size(format_size(n)) == n


@pytest.mark.parametrize("seconds", [0.5, 1.0, 10.0, 300.0, 14400.0, 90.0, 0.0])
def test_duration_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == seconds
