from dataclasses import replace

from conduitctl.reconcile import ActionKind, plan_backends
from conduitctl.runtime.base import BackendStatus, State, launch_specs
from conduitctl.runtime.docker import container_kwargs
from conduitctl.settings import settings_from_dict


def settings(**workload):
    return settings_from_dict(
        {"cluster": {"containers": 3, "name": "c"}, "workload": {"profile": "sim", **workload}}
    )


def running(spec, **kw):
    base = BackendStatus(
        name=spec.name,
        index=spec.backend.index,
        state=State.RUNNING,
        config_hash=spec.config_hash(),
    )
    return replace(base, **kw)


def test_everything_missing_is_created():
    specs = launch_specs(settings())
    actions = plan_backends(specs, [])
    assert [(a.kind, a.name) for a in actions] == [
        (ActionKind.CREATE, "c-1"),
        (ActionKind.CREATE, "c-2"),
        (ActionKind.CREATE, "c-3"),
    ]


def test_converged_fleet_keeps_everything():
    specs = launch_specs(settings())
    actions = plan_backends(specs, [running(s) for s in specs])
    assert {a.kind for a in actions} == {ActionKind.KEEP}
    assert not any(a.changes for a in actions)


def test_changed_setting_recreates_stopped_starts_extra_removed():
    old = launch_specs(settings())
    new = launch_specs(settings(max_clients=100))
    observed = [
        running(old[0]),
        running(new[1], state=State.STOPPED, exit_code=1),
        running(new[2]),
        BackendStatus(name="c-4", index=4, state=State.RUNNING, config_hash="x"),
    ]
    actions = plan_backends(new, observed)
    assert [(a.kind, a.name) for a in actions] == [
        (ActionKind.REMOVE, "c-4"),
        (ActionKind.START, "c-2"),
        (ActionKind.RECREATE, "c-1"),
        (ActionKind.KEEP, "c-3"),
    ]
    assert actions[1].reason == "stopped (exit code 1)"


def test_config_hash_tracks_what_needs_a_recreate():
    a = launch_specs(settings())[0]
    assert a.config_hash() == launch_specs(settings())[0].config_hash()
    assert a.config_hash() != launch_specs(settings(max_clients=99))[0].config_hash()
    assert a.config_hash() != launch_specs(settings(image="other:tag"))[0].config_hash()


def test_sim_argv_has_conduit_flags_and_listener():
    spec = launch_specs(settings())[1]
    argv = spec.argv("/data")
    assert argv[:3] == ["start", "--max-common-clients", "250"]
    assert "--metrics-addr" in argv and "127.0.0.1:29101" in argv
    assert argv[argv.index("--listen") + 1] == "127.0.0.1:28001"
    assert argv[argv.index("--name") + 1] == "c-2"


def test_v1_dialect_uses_old_flags():
    argv = launch_specs(settings(flag_dialect="v1"))[0].argv("/d")
    assert "--max-clients" in argv and "--stats-file" in argv
    assert "--max-common-clients" not in argv


def test_container_kwargs_host_network_hardening():
    kwargs = container_kwargs(launch_specs(settings())[0])
    assert kwargs["network_mode"] == "host"
    assert "ports" not in kwargs
    assert kwargs["read_only"] and kwargs["cap_drop"] == ["ALL"]
    assert kwargs["security_opt"] == ["no-new-privileges:true"]
    assert kwargs["volumes"] == {"c-data-1": {"bind": "/home/conduit/data", "mode": "rw"}}
    assert kwargs["labels"]["io.conduitctl.index"] == "1"


def test_container_kwargs_bridge_publishes_on_loopback_only():
    s = settings_from_dict(
        {
            "cluster": {"containers": 2, "name": "c"},
            "workload": {"profile": "sim"},
            "container": {"network": "bridge"},
        }
    )
    kwargs = container_kwargs(launch_specs(s)[1])
    assert "network_mode" not in kwargs
    assert kwargs["ports"] == {
        "29101/tcp": ("127.0.0.1", 29101),
        "28001/tcp": ("127.0.0.1", 28001),
        "28001/udp": ("127.0.0.1", 28001),
    }
    argv = kwargs["command"]
    assert argv[argv.index("--listen") + 1] == "0.0.0.0:28001"  # inside its own namespace


def test_a_moved_image_tag_recreates_an_otherwise_current_backend():
    specs = launch_specs(settings())
    observed = [running(specs[0], image_changed=True), running(specs[1]), running(specs[2])]
    actions = plan_backends(specs, observed)
    assert [(a.kind, a.name) for a in actions if a.changes] == [(ActionKind.RECREATE, "c-1")]
    assert "is another image now" in actions[0].reason
