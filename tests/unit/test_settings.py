import os

import pytest

from conduitctl.errors import ConfigError
from conduitctl.fleet import desired_backends
from conduitctl.settings import (
    Listener,
    Proto,
    Settings,
    find_config,
    parse_settings,
    settings_from_dict,
)
from conduitctl.settings_file import settings_to_toml

SIM_FRONT = """
[workload]
profile = "sim"
[front]
kind = "nginx"
listeners = ["tcp:443", "udp:5566"]
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    message = str(caught.value)
    assert "\n" not in message  # one line
    return message


def test_defaults_are_valid_and_honest_about_conduit():
    s = Settings()
    assert s.workload.profile == "psiphon-conduit"
    assert s.front.kind == "none"  # real Conduit listens on nothing
    assert s.container.read_only and s.container.no_new_privileges
    assert s.container.cap_drop == ["ALL"]
    assert s.workload.bind_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[cluster]\ncontainers = 0", "cluster.containers = 0: allowed range is 1..64"),
        ("[workload]\nmax_clients = 5000", "workload.max_clients = 5000: allowed range is 1..1000"),
        (
            "[workload.overrides.2]\nmax_clients = 3000",
            "workload.overrides.2.max_clients = 3000: allowed range is 1..1000",
        ),
        ("[container]\ncpus = 0", "container.cpus = 0: allowed range is > 0 and <= 256"),
        ("[cluster]\ncontaners = 3", "cluster.contaners: unknown key; did you mean 'containers'?"),
        ("[bogus]\nx = 1", "bogus: unknown key"),
        ("[cluster]\nruntime = 'podman'", "cluster.runtime = 'podman'"),
        ("[front]\nfail_timeout = 'soon'", "front.fail_timeout = 'soon': expected a duration"),
        ("[health]\ntimeout = 5", "health.timeout = 5.0: longer than health.interval"),
        ("[front]\nlisteners = ['sctp:1']", "front.listeners.0 = 'sctp:1': protocol must be tcp"),
        ("[workload.overrides.9]\nmax_clients = 3", "workload.overrides.9 = 9: no such backend"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_values_name_key_value_and_range(text, expected):
    assert expected in error_of(text)


def test_max_clients_ceiling_depends_on_profile():
    assert "Conduit's ceiling" in error_of("[workload]\nmax_clients = 1001")
    sim = parse_settings("[workload]\nprofile = 'sim'\nmax_clients = 2000")
    assert sim.workload.max_clients == 2000
    assert "allowed range is 1..4000" in error_of("[workload]\nprofile = 'sim'\nmax_clients = 5000")


def test_duplicate_listeners_rejected():
    text = SIM_FRONT.replace('"udp:5566"]', '"udp:5566", "tcp:443"]')
    assert "front.listeners = 'tcp:443': listed twice" in error_of(text)


def test_same_port_on_tcp_and_udp_is_fine():
    s = parse_settings(SIM_FRONT.replace('"udp:5566"', '"udp:443"'))
    assert [str(x) for x in s.front.listeners] == ["tcp:443", "udp:443"]


def test_overlapping_port_ranges_rejected():
    text = SIM_FRONT.replace('profile = "sim"', 'profile = "sim"\nmetrics_port_base = 28004')
    message = error_of(text)
    assert "overlap" in message and "workload.metrics_port_base" in message


def test_listener_inside_backend_range_rejected():
    message = error_of(SIM_FRONT.replace("tcp:443", "tcp:28003"))
    assert "front.listeners = 'tcp:28003'" in message
    assert "workload.listen_port_base" in message


def test_front_on_profile_that_listens_on_nothing_needs_override():
    text = "[front]\nkind = 'nginx'\nlisteners = ['tcp:443']"
    message = error_of(text)
    assert message.startswith("conduit.toml: front.kind = 'nginx'")
    assert 'front.kind = "none"' in message
    ok = parse_settings(text + "\nallow_without_listeners = true")
    assert ok.front.kind == "nginx"


def test_front_without_listeners_rejected():
    assert "needs listeners" in error_of("[workload]\nprofile='sim'\n[front]\nkind='haproxy'")


def test_generic_profile_needs_image():
    assert "workload.image" in error_of("[workload]\nprofile = 'generic'")


def test_notifier_secrets_never_in_errors():
    message = error_of("[alerts]\nnotifiers = ['tgram//123456:SECRETTOKEN']")
    assert "SECRETTOKEN" not in message
    assert "alerts.notifiers" in message


def test_listener_parsing():
    assert Listener.parse("udp:5566") == Listener(proto=Proto.UDP, host=None, port=5566)
    assert Listener.parse("tcp:127.0.0.1:8443").host == "127.0.0.1"
    assert str(Listener.parse("tcp:127.0.0.1:8443")) == "tcp:127.0.0.1:8443"
    with pytest.raises(ValueError):
        Listener.parse("tcp:99999")


def test_overrides_apply_to_one_backend():
    s = settings_from_dict(
        {
            "cluster": {"containers": 3},
            "workload": {
                "profile": "sim",
                "overrides": {"2": {"max_clients": 10, "memory": "256m"}},
            },
        }
    )
    backends = desired_backends(s)
    assert [b.name for b in backends] == ["conduit-1", "conduit-2", "conduit-3"]
    assert [b.max_clients for b in backends] == [250, 10, 250]
    assert backends[1].memory_bytes == 256 * 1024**2
    assert [b.listen_port for b in backends] == [28000, 28001, 28002]
    assert [b.metrics_port for b in backends] == [29100, 29101, 29102]


def test_conduit_backends_have_no_listen_port():
    assert all(b.listen_port is None for b in desired_backends(Settings()))


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        s.cluster.containers = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {
            "workload": {"profile": "sim", "overrides": {"1": {"cpus": 0.5, "bandwidth_mbps": -1}}},
            "front": {"kind": "nginx", "listeners": ["tcp:443", "udp:443"]},
            "alerts": {"notifiers": ["tgram://1:abc/2"], "nic_mbps": 500},
            "host": {"nic": "ens3", "nic_mbps": 1000},
            "cluster": {"state_dir": "/tmp/x"},
        },
        {"workload": {"profile": "generic", "image": "nginx:stable", "command": ["a", "b c"]}},
    ],
)
def test_generated_toml_round_trips_and_is_commented(data):
    settings = settings_from_dict(data)
    text = settings_to_toml(settings, ["header line"])
    assert parse_settings(text) == settings
    assert "# header line" in text
    assert text.count("#") > 20


def test_find_config_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONDUITCTL_CONFIG", raising=False)
    explicit = tmp_path / "x.toml"
    assert find_config(explicit) == explicit
    monkeypatch.setenv("CONDUITCTL_CONFIG", "/env/conduit.toml")
    assert str(find_config(None)) == "/env/conduit.toml"
    monkeypatch.delenv("CONDUITCTL_CONFIG")
    assert find_config(None).name == "conduit.toml"


def test_state_dir_default_depends_on_user():
    expected = "/var/lib/conduitctl" if os.geteuid() == 0 else ".conduitctl"
    assert str(Settings().state_dir).endswith(expected)


def test_the_hang_check_is_the_free_one_unless_asked_and_written_back():
    from conduitctl.errors import ConfigError
    from conduitctl.settings import parse_settings, settings_from_dict
    from conduitctl.settings_file import settings_to_toml

    assert settings_from_dict({}).health.hang_check == "queues"
    chosen = settings_from_dict({"health": {"hang_check": "greetings"}})
    assert parse_settings(settings_to_toml(chosen)).health.hang_check == "greetings"
    with pytest.raises(ConfigError, match=r"health\.hang_check"):
        settings_from_dict({"health": {"hang_check": "always"}})
