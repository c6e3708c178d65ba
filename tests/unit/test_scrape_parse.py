"""parse_metrics reads every page as prometheus_client's text parser does: the same values,
and a ValueError where it raises one, whether the fast path or the fallback reads it."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conduitctl.observe.scrape import _parse_plain, parse_metrics
from conduitctl.sim.metrics import render_metrics
from conduitctl.sim.stats import Snapshot

GO_STYLE = """\
# HELP conduit_build_info Build information
# TYPE conduit_build_info gauge
conduit_build_info{build_repo="github.com/Psiphon-Inc/conduit",build_rev="abc",values_rev="x"} 1
# HELP conduit_region_connected_clients Connected clients per region
# TYPE conduit_region_connected_clients gauge
conduit_region_connected_clients{region="DE",scope="common"} 3
conduit_region_connected_clients{region="IR",scope="common"} 40
conduit_region_connected_clients{region="IR",scope="personal"} 2
# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.1e-05
go_gc_duration_seconds{quantile="1"} 0.000411
go_gc_duration_seconds_sum 0.0123
go_gc_duration_seconds_count 42
# HELP go_info Information about the Go environment.
# TYPE go_info gauge
go_info{version="go1.22.5"} 1
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.5
# HELP http_requests Requests.
# TYPE http_requests counter
http_requests{code="200"} 7
http_requests{code="500"} 1
# TYPE latency histogram
latency_bucket{le="0.1"} 3
latency_bucket{le="+Inf"} 5
latency_sum 0.7
latency_count 5
"""

PAGES = [
    "",
    "\n\n",
    "conduit_is_live 1\n",
    "conduit_is_live 1",
    "conduit_is_live 1 1700000000000\n",
    "a 1\r\nb 2.5\r\n",
    "  padded   3  \n",
    "x -Inf\ny +Inf\nz NaN\nw 1e3\nv .5\nu 7.\n",
    GO_STYLE,
    "# TYPE c counter\nc 2\nc 3\n",  # no _total: the samples are named with it
    "# TYPE c counter\nother 1\nc 4\n",  # a stray sample ends the family
    "# TYPE c_total counter\nc_total 2\n",
    "# HELP c help text\n# TYPE c counter\nc 1\n",
    "# TYPE c counter\n# HELP c more help\nc 1\n",
    "# HELP c help\n# HELP d other\nc 1\n",
    "# a comment\n#TYPE x counter\nx 1\n",
    "# TYPE g gauge extra words\ng 1\n",
    "# TYPE s summary\ns 1\ns_sum 2\ns_count 3\ns_bucket 4\n",
    'm{} 1\nm{a="x"}2\nm {a="x"} 3\n',
    'm{a="with \\"quotes\\", commas, } and = signs"} 1\n',
    'm{a="new\\nline",b="back\\\\slash"} 1\n',
    # shapes the fast path leaves to prometheus_client
    'm{a="1",} 1\n',
    'm{a = "1"} 1\n',
    'm{__name__="x"} 1\n',
    '{__name__="m"} 1\n',
    'm{"quoted.label"="1"} 1\n',
    'm{a="1"} 1 # {trace="x"} 1\n',
    "m\t1\n",
    "m 1\t2\n",
    "m 1 2 3\n",
    "# HELP\n",
    '# HELP "quoted.name" doc\n"quoted.name" 1\n',
    "x 0x10\n",
    "x inf\ny Infinity\n",
    "x 1_000\n",
    # what it rejects
    "# TYPE\n",
    "# TYPE x\n",
    "# TYPE 9x counter\n",
    "9bad 1\n",
    "name\n",
    "name \n",
    "x one\n",
    "x 1 two\n",
    'm{a="1",a="2"} 1\n',
    'm{__reserved="1"} 1\n',
    'm{a="1"\n',
    "m{a=1} 1\n",
]


def reference(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a
    )


@pytest.mark.parametrize("text", PAGES)
def test_parse_metrics_reads_as_prometheus_client_does(text):
    try:
        expected = reference(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_metrics(text)
        return
    assert same(parse_metrics(text), expected)


@pytest.mark.parametrize("text", PAGES)
def test_the_fast_path_never_disagrees(text):
    fast = _parse_plain(text)
    if fast is None:
        return  # left to prometheus_client
    assert same(fast, reference(text))


SIM_PAGE = render_metrics(
    Snapshot(
        is_live=True,
        connecting=1,
        connected=4,
        announcing=5,
        bytes_up=123,
        bytes_down=456,
        uptime_seconds=12.5,
        idle_seconds=0,
        max_clients=10,
        max_personal_clients=2,
        bandwidth_bps=625_000,
        refused=3,
        udp_sessions=1,
        session_bytes=16 * 1024 * 1024,
    )
)


@pytest.mark.parametrize("text", [GO_STYLE, SIM_PAGE])
def test_the_pages_conduitctl_reads_take_the_fast_path(text):
    assert _parse_plain(text) is not None
    assert same(parse_metrics(text), reference(text))
