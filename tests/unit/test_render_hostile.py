"""A hostile corpus (hypothesis) against settings and every renderer: refused in one line, or
rendered with exactly the expected structure. Pure: parsing only; the real tools run on a
sample in tests/integration/test_render_hostile_tools.py."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings

from conduitctl.render import haproxy, nginx
from conduitctl.settings import settings_from_dict
from hostile_corpus import (
    BASE,
    FIELDS,
    Field,
    cases,
    check_haproxy_structure,
    check_logrotate_structure,
    check_nginx_structure,
    check_rsyslog_structure,
    check_systemd_structure,
    env_for,
    nginx_directives,
    render_all,
    settle,
)

MIN_VALUES = 300


def test_the_corpus_covers_every_string_and_number_setting() -> None:
    paths = {".".join(f.path) for f in FIELDS}
    for key in ("front.bind", "cluster.state_dir", "cluster.name", "workload.bind_host",
                "workload.image", "workload.extra_args", "workload.command", "alerts.notifiers",
                "host.nic", "container.user", "container.cap_drop", "front.listeners.host",
                "container.memory", "health.interval", "workload.overrides.1.cpus"):  # fmt: skip
        assert key in paths
    assert len(FIELDS) > 60


def test_hostile_values_are_refused_in_one_line_or_render_the_expected_files() -> None:
    default = settings_from_dict(BASE)
    default_env = env_for(default)
    workdir = Path(tempfile.mkdtemp(prefix="hostile-"))
    default_nginx = set(nginx_directives(nginx.render(default, default_env).text, workdir))
    default_haproxy = haproxy.render(default, default_env).text
    tried: set[str] = set()
    outcome = {"refused": 0, "rendered": 0}

    @settings(max_examples=450, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(cases())
    def run(case: tuple[Field, Any]) -> None:
        field, value = case
        tried.add(repr(case))
        s = settle(field, value)
        if s is None:
            outcome["refused"] += 1
            return
        outcome["rendered"] += 1
        env = env_for(s)
        files = render_all(s, env)
        check_nginx_structure(s, files["nginx"].text, default_nginx, workdir)
        check_haproxy_structure(s, files["haproxy"].text, default_haproxy)
        check_systemd_structure(env, files["systemd"].text)
        check_rsyslog_structure(env, files["rsyslog"].text)
        check_logrotate_structure(env, files["logrotate"].text)
        for rendered in files.values():
            assert "\x00" not in rendered.text

    run()
    print(f"hostile values tried: {len(tried)} ({outcome})")
    assert len(tried) >= MIN_VALUES
    assert outcome["refused"] and outcome["rendered"]
