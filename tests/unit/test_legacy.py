import pytest

from conduitctl.errors import ConfigError
from conduitctl.legacy import convert, parse_settings_conf
from conduitctl.settings import settings_from_dict

CONF = """\
MAX_CLIENTS=200
BANDWIDTH=5
CONTAINER_COUNT=3
CONTAINER_PORT_BASE=443
DOCKER_CPUS=1.5
DOCKER_MEMORY=1g
TRACKER_ENABLED=true
TELEGRAM_BOT_TOKEN="123456:ABC-secret"
TELEGRAM_CHAT_ID="-100987"
TELEGRAM_INTERVAL=6
MAX_CLIENTS_2=50
BANDWIDTH_2=-1
CPUS_3=0.5
MEMORY_3=512m
"""


def test_parse_handles_quotes_comments_and_blank_lines():
    values = parse_settings_conf('# comment\n\nA="x y"\nexport B=2  # trailing\nC=\n')
    assert values == {"A": "x y", "B": "2", "C": ""}


def test_bad_line_is_named():
    with pytest.raises(ConfigError, match=r"settings.conf:2: not a KEY=value line"):
        parse_settings_conf("A=1\nthis is not bash\n")


def test_convert_full_file():
    imported = convert(parse_settings_conf(CONF))
    settings = settings_from_dict(imported.data)
    assert settings.cluster.containers == 3
    assert settings.workload.max_clients == 200
    assert settings.workload.bandwidth_mbps == 5
    assert settings.container.cpus == 1.5
    assert settings.container.memory == 1024**3
    assert settings.workload.overrides[2].max_clients == 50
    assert settings.workload.overrides[2].bandwidth_mbps == -1
    assert settings.workload.overrides[3].cpus == 0.5
    assert settings.workload.overrides[3].memory == 512 * 1024**2
    assert settings.alerts.notifiers == ["tgram://123456:ABC-secret/-100987"]
    assert settings.front.kind == "none"
    assert imported.has_secrets
    assert "TELEGRAM_INTERVAL" in imported.ignored and "CONTAINER_PORT_BASE" in imported.ignored


def test_defaults_of_conduit_manager_apply():
    settings = settings_from_dict(convert(parse_settings_conf("")).data)
    assert (settings.cluster.containers, settings.workload.max_clients) == (1, 200)
    assert settings.alerts.notifiers == []


def test_half_telegram_config_is_an_error():
    with pytest.raises(ConfigError, match="TELEGRAM_CHAT_ID is empty"):
        convert(parse_settings_conf('TELEGRAM_BOT_TOKEN="x"\n'))


def test_non_numeric_value_is_named():
    with pytest.raises(ConfigError, match=r"MAX_CLIENTS_4 = 'lots'"):
        convert(parse_settings_conf("MAX_CLIENTS_4=lots\n"))
