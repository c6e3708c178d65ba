"""The whole plan of a converge (pure): every refusal is found before the first step."""

from __future__ import annotations

import socket
from dataclasses import replace

from conduitctl.observe.ports import ports_in_use
from conduitctl.reconcile import DRAINED_REASON, ActionKind, Observed, plan_fleet
from conduitctl.runtime.base import BackendStatus, State, launch_specs
from conduitctl.settings import settings_from_dict


def specs(containers: int = 3):
    return launch_specs(
        settings_from_dict(
            {"cluster": {"containers": containers, "name": "c"}, "workload": {"profile": "sim"}}
        )
    )


def status(spec, state=State.RUNNING):
    return BackendStatus(spec.name, spec.backend.index, state, config_hash=spec.config_hash())


def test_a_drained_backend_stays_stopped_in_the_plan_itself():
    wanted = specs()
    observed = Observed(
        [status(wanted[0]), status(wanted[1], State.STOPPED), status(wanted[2])],
        drained=frozenset({"c-2"}),
    )
    plan = plan_fleet(wanted, observed)
    kept = {a.name: a for a in plan.actions}["c-2"]
    assert (kept.kind, kept.reason) == (ActionKind.KEEP, DRAINED_REASON)
    assert not plan.changes and not plan.refusals


def test_a_foreign_name_refuses_the_whole_change():
    wanted = specs()
    observed = Observed([], foreign={"c-2": "a container conduitctl does not own"})
    plan = plan_fleet(wanted, observed)
    assert plan.refusals == ["c-2: a container conduitctl does not own"]
    # c-1 would have been created first: the refusal is what keeps it from happening
    assert [a.kind for a in plan.actions][:1] == [ActionKind.CREATE]


def test_a_lost_key_refuses_unless_new_keys():
    wanted = specs(2)
    observed = Observed([status(wanted[0])], lost_keys=frozenset({"c-2", "c-1"}))
    refused = plan_fleet(wanted, observed)
    assert len(refused.refusals) == 1 and refused.refusals[0].startswith("c-2: no identity key")
    assert plan_fleet(wanted, observed, new_keys=True).refusals == []


def test_a_taken_port_refuses_only_a_backend_being_started():
    wanted = specs(2)
    observed = Observed([status(wanted[0])], busy_ports={"c-1": "tcp x", "c-2": "tcp y"})
    assert [r.split(":")[0] for r in plan_fleet(wanted, observed).refusals] == ["c-2"]


def test_the_front_step_and_its_rejection_are_in_the_plan():
    wanted = specs(1)
    plan = plan_fleet(wanted, Observed([status(wanted[0])], front="reload"))
    assert plan.front == "reload" and plan.changes
    bad = plan_fleet(wanted, Observed([status(wanted[0])], front_error="nginx -t: bad"))
    assert bad.refusals == ["front: nginx -t: bad"]


def test_plan_document_lists_every_step():
    wanted = specs(1)
    doc = plan_fleet(wanted, Observed([], legacy=True)).to_dict()
    assert doc["leave_legacy"] is True
    assert doc["actions"] == [{"kind": "create", "name": "c-1", "reason": "missing"}]


def test_ports_in_use_names_the_port_another_process_holds():
    spec = specs(1)[0]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        backend = replace(spec.backend, host="127.0.0.1", metrics_port=port, listen_port=None)
        assert ports_in_use([backend]) == {"c-1": f"tcp 127.0.0.1:{port}"}
    assert ports_in_use([backend]) == {}


def test_one_unknown_backend_check_names_the_choices_in_index_order():
    import pytest

    from conduitctl.errors import BadInput
    from conduitctl.fleet import require_backend

    assert require_backend("c-2", ["c-10", "c-2"]) == "c-2"
    with pytest.raises(BadInput, match=r"no backend named c-9; choose one of: c-1, c-2, c-10$"):
        require_backend("c-9", ["c-10", "c-2", "c-1"])


def test_a_backend_its_user_cannot_start_refuses_only_when_it_would_be_started():
    wanted = specs(3)
    changed = replace(status(wanted[2]), config_hash="old")  # c-3 would be recreated
    observed = Observed(
        [status(wanted[0]), changed],
        unlaunchable={n: "closed to 1000:1000" for n in ("c-1", "c-2", "c-3")},
    )
    refusals = plan_fleet(wanted, observed).refusals
    assert refusals == ["c-2: closed to 1000:1000", "c-3: closed to 1000:1000"]


def test_a_key_that_does_not_parse_refuses_a_start_unless_new_keys():
    wanted = specs(3)
    changed = replace(status(wanted[2]), config_hash="old")  # c-3 would be recreated
    broken = {"c-1": "not JSON", "c-2": "not JSON", "c-3": "not JSON"}
    observed = Observed([status(wanted[0]), changed], broken_keys=broken)
    refused = plan_fleet(wanted, observed).refusals
    assert [r.split(":")[0] for r in refused] == ["c-2", "c-3"]  # c-1 runs: left alone
    assert "keys restore" in refused[0]
    assert plan_fleet(wanted, observed, new_keys=True).refusals == []


def test_what_a_station_key_is():
    from conduitctl.runtime.base import key_problem
    from conduitctl.sim.keys import key_document, new_key

    assert key_problem(key_document(new_key()).encode()) is None  # the simulator's
    real = b'{"mnemonic": "a b c", "privateKeyBase64": "AAECAwQF"}'
    assert key_problem(real) is None  # Conduit's shape (CONDUIT.md)
    assert key_problem(bytes([0xFF, 0xFE])) == "not JSON"
    assert key_problem(b"{truncated") == "not JSON"
    assert key_problem(b"[]") == "no privateKeyBase64"
    assert key_problem(b'{"privateKeyBase64": ""}') == "no privateKeyBase64"
    assert key_problem(b'{"privateKeyBase64": "not base64!"}') == "privateKeyBase64 is not base64"
