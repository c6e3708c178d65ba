import io
import json
import logging
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from conduitctl.errors import BadInput
from conduitctl.logs import logfmt_value, parse_logfmt, setup_logging, url_secrets

log = logging.getLogger("conduitctl.daemon")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_key_value_format_with_extras():
    out = io.StringIO()
    setup_logging("info", stream=out)
    log.info("restarted after a crash", extra={"backend": "conduit-3", "attempt": 2})
    (line,) = lines(out)
    assert re.match(r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info ", line)
    assert 'logger=conduitctl.daemon msg="restarted after a crash" backend=conduit-3' in line
    fields = parse_logfmt(line)
    assert fields["msg"] == "restarted after a crash"
    assert (fields["backend"], fields["attempt"], fields["level"]) == ("conduit-3", "2", "info")


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        "two words",
        "",
        'say "hi"',
        "a=b",
        "back\\slash",
        "line\nbreak\ttab\rcr",
        "bell\x07",
        "ünïcødé ✓",
    ],
)
def test_logfmt_values_round_trip(text: str):
    line = f"k={logfmt_value(text)} next=1"
    assert parse_logfmt(line) == {"k": text, "next": "1"}
    assert "\n" not in line


def test_logfmt_value_types():
    assert logfmt_value(None) == "null"
    assert logfmt_value(True) == "true"
    assert logfmt_value(1.5) == "1.5"
    assert logfmt_value([1, 2]) == '"[1, 2]"'


def test_parse_logfmt_rejects_garbage():
    with pytest.raises(ValueError):
        parse_logfmt("no pairs here")
    with pytest.raises(ValueError):
        parse_logfmt('k="unterminated')


def test_a_traceback_stays_on_one_line():
    out = io.StringIO()
    setup_logging(stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("tick failed", extra={"backend": "conduit-1"})
    (line,) = lines(out)
    fields = parse_logfmt(line)
    assert fields["level"] == "error"
    assert fields["exc"].startswith("Traceback") and "RuntimeError: boom" in fields["exc"]


def test_json_format_one_object_per_line():
    out = io.StringIO()
    setup_logging("debug", json=True, stream=out)
    log.debug("probe", extra={"backend": "conduit-2", "rtt_ms": 1.5, "obj": object()})
    log.warning("two\nlines")
    first, second = (json.loads(line) for line in lines(out))
    assert first["level"] == "debug" and first["logger"] == "conduitctl.daemon"
    assert first["msg"] == "probe"
    assert (first["backend"], first["rtt_ms"]) == ("conduit-2", 1.5)
    assert first["obj"].startswith("<object")  # not JSON: written as str()
    assert second["msg"] == "two\nlines"
    assert list(first)[:4] == ["ts", "level", "logger", "msg"]


def test_level_filters_and_bad_level_is_bad_input():
    out = io.StringIO()
    setup_logging("warning", stream=out)
    log.info("hidden")
    log.warning("shown")
    assert [parse_logfmt(line)["msg"] for line in lines(out)] == ["shown"]
    with pytest.raises(BadInput, match="loud"):
        setup_logging("loud")


def test_idempotent_no_duplicate_handlers():
    first, second = io.StringIO(), io.StringIO()
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    setup_logging(stream=first)
    setup_logging(stream=second)
    log.info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_conduitctl", False)]
    assert len(ours) == 1
    assert foreign in logging.getLogger().handlers  # handlers it did not install stay


def test_file_is_0640_and_rotates_at_max_bytes(tmp_path: Path):
    path = tmp_path / "log" / "conduitctl.log"
    setup_logging(file=path, max_bytes=2000, backups=2, stream=io.StringIO())
    for i in range(100):
        log.info("filler line to force a rollover", extra={"i": i})
    rotated = sorted(p.name for p in path.parent.iterdir())
    assert rotated == ["conduitctl.log", "conduitctl.log.1", "conduitctl.log.2"]
    for p in path.parent.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p
        assert p.stat().st_size <= 2000
        for line in p.read_text().splitlines():
            assert parse_logfmt(line)["msg"] == "filler line to force a rollover"
    last = parse_logfmt(path.read_text().splitlines()[-1])
    assert last["i"] == "99"


def test_existing_file_is_tightened_and_appended(tmp_path: Path):
    path = tmp_path / "conduitctl.log"
    path.write_text("old line\n")
    path.chmod(0o666)
    setup_logging(file=path, stream=io.StringIO())
    log.info("new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_text().splitlines()[0] == "old line"
    assert parse_logfmt(path.read_text().splitlines()[1])["msg"] == "new"


def test_unwritable_log_file_is_bad_input(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BadInput, match="cannot open"):
        setup_logging(file=blocker / "sub" / "x.log", stream=io.StringIO())


TOKEN = "123456:AAHsecretTOKENvalue"
URL = f"tgram://{TOKEN}/987654321"


def test_a_notifier_secret_never_reaches_a_log_line(tmp_path):
    stream = io.StringIO()
    log_file = tmp_path / "daemon.log"
    setup_logging("debug", file=log_file, stream=stream, secret_urls=[URL])
    try:
        logging.getLogger("conduitctl.test").info("sending to %s", URL, extra={"target": URL})
        # what urllib3 logs at debug, pinned to WARNING now: a warning still goes through
        logging.getLogger("urllib3.connectionpool").debug(f"POST /bot{TOKEN}/sendMessage")
        logging.getLogger("urllib3.connectionpool").warning(f"retrying /bot{TOKEN}/sendMessage")
        try:
            raise RuntimeError(f"refused {URL}")
        except RuntimeError:
            logging.getLogger("conduitctl.test").exception("send failed")
    finally:
        setup_logging("info", stream=io.StringIO())
    written = stream.getvalue() + log_file.read_text()
    assert TOKEN not in written and "AAHsecret" not in written and "987654321" not in written
    assert "sendMessage" in written and "retrying" in written  # the warning itself is kept
    assert "POST" not in written  # the debug request line is not
    assert written.count("***") >= 4


def test_url_secrets_are_the_pieces_long_enough_to_be_tokens():
    found = url_secrets(["json://user:hunter22@example.org:8080/hook/abc", "mailto://x@y.z"])
    assert {"hunter22", "example.org", "user:hunter22@example.org:8080/hook/abc"} <= found
    assert not {"8080", "hook", "abc", "user"} & found


def test_reading_a_config_hides_its_notifier_urls_from_every_log_line():
    """No command has to remember set_secrets: parsing the settings does it (a CLI process,
    the rollout's driver, a snapshot read during a rollback)."""
    from conduitctl.logs import REDACT
    from conduitctl.settings import parse_settings

    stream = io.StringIO()
    setup_logging("warning", stream=stream)  # as the CLI does: no secret known yet
    assert not REDACT.secrets
    other = "json://127.0.0.1:9/hook/SNAPSHOTTOKEN42"
    try:
        parse_settings(f'[alerts]\nnotifiers = ["{URL}"]\n')
        parse_settings(f'[alerts]\nnotifiers = ["{other}"]\n')  # an older version: both kept
        logging.getLogger("urllib3.connectionpool").warning(f"retrying /bot{TOKEN}/sendMessage")
        logging.getLogger("conduitctl.test").warning("gave up on %s", other)
    finally:
        setup_logging("info", stream=io.StringIO())
    written = stream.getvalue()
    assert TOKEN not in written and "SNAPSHOTTOKEN42" not in written
    assert "retrying" in written and "gave up" in written and written.count("***") >= 2
