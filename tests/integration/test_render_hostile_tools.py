"""A bounded sample of the hostile corpus (tests/hostile_corpus.py) through the real tools:
what renders must pass `nginx -t`, `haproxy -c` and `systemd-analyze verify`, and keep the
structure the defaults give each file. Nothing is started and nothing binds a port."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from conduitctl.render import haproxy, nginx
from conduitctl.render.check_front import check_haproxy, check_nginx, find_tool
from conduitctl.render.check_host import check_systemd
from conduitctl.settings import settings_from_dict
from hostile_corpus import (
    BASE,
    Field,
    cases,
    check_haproxy_structure,
    check_nginx_structure,
    check_systemd_structure,
    env_for,
    nginx_directives,
    render_all,
    settle,
)

SAMPLE = 250  # about 40 of them render and go through the tools


@pytest.mark.skipif(
    find_tool("nginx") is None or find_tool("haproxy") is None,
    reason="nginx and haproxy are not both installed",
)
def test_a_sample_of_hostile_values_passes_the_real_tools() -> None:
    default = settings_from_dict(BASE)
    scratch = Path(tempfile.mkdtemp(prefix="hostile-tools-"))
    default_nginx = set(nginx_directives(nginx.render(default, env_for(default)).text, scratch))
    default_haproxy = haproxy.render(default, env_for(default)).text
    checked = {"refused": 0, "through the tools": 0, "systemd skipped": 0}

    @settings(max_examples=SAMPLE, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(cases(plain_first=True))
    def run(case: tuple[Field, Any]) -> None:
        s = settle(*case)
        if s is None:
            checked["refused"] += 1
            return
        root = Path(tempfile.mkdtemp(prefix="case-", dir=scratch))
        env = env_for(s, root)
        for directory in (env.state_dir, env.log_dir, env.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        files = render_all(s, env)
        check_nginx(files["nginx"], env, root / "work")
        check_haproxy(files["haproxy"], env, root / "work")
        if check_systemd(files["systemd"], env, root / "work").skipped:
            checked["systemd skipped"] += 1
        check_nginx_structure(s, files["nginx"].text, default_nginx, root)
        check_haproxy_structure(s, files["haproxy"].text, default_haproxy)
        check_systemd_structure(env, files["systemd"].text)
        checked["through the tools"] += 1
        shutil.rmtree(root)

    run()
    print(f"hostile sample: {checked}")
    assert checked["through the tools"] >= 30
