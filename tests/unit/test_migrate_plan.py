"""The migration plan (pure): which containers are conduit-manager's stations, in which
layout, and every doubt that refuses the whole migration before anything is touched."""

from __future__ import annotations

from dataclasses import replace

from conduitctl.migrate_plan import (
    FoundContainer,
    find_stations,
    flag_value,
    plan_migration,
    station_index,
    v1_flags,
)
from conduitctl.runtime.docker_migrate import found_container

V1 = ("start", "--max-clients", "200", "--bandwidth", "5")


def box(name: str, volume: str | None, running: bool = True, **kw) -> FoundContainer:
    return FoundContainer(name=name, running=running, image="ghcr.io/ssmirr/conduit/conduit:latest",
                          data_volume=volume, args=V1, **kw)  # fmt: skip


def keyed(found: list[FoundContainer], keys: dict[str, str | None]):
    stations, refusals, layout = find_stations(found)
    return [replace(s, key_sha256=keys.get(s.container)) for s in stations], refusals, layout


def plan(stations, **kw):
    args = dict(cluster="conduit", containers=8, our_keys={}, ours_running=set(), found_names=set())
    return plan_migration(stations, **{**args, **kw})


def test_station_numbers():
    assert [station_index(n) for n in ("conduit", "conduit-2", "conduit-12", "conduit-1")] == [
        1, 2, 12, 1]  # fmt: skip
    for other in ("conduit-0", "conduit-02", "conduitd", "conduit-x", "my-conduit-2", "conduit-"):
        assert station_index(other) is None


def test_the_standard_layout_shares_volumes_with_ours_from_2_on():
    stations, refusals, layout = keyed(
        [box("conduit", "conduit-data"), box("conduit-2", "conduit-data-2"),
         box("conduit-3", "conduit-data-3", running=False), box("nginx", None)],
        {"conduit": "a" * 64, "conduit-2": "b" * 64, "conduit-3": "c" * 64},
    )  # fmt: skip
    assert (refusals, layout) == ([], "standard")
    steps, refused = plan(stations)
    assert refused == []
    assert [(s.station.container, s.backend, s.target_volume, s.shared_volume) for s in steps] == [
        ("conduit", "conduit-1", "conduit-data-1", False),  # its key is copied
        ("conduit-2", "conduit-2", "conduit-data-2", True),  # the same volume: nothing to copy
        ("conduit-3", "conduit-3", "conduit-data-3", True),
    ]
    assert steps[0].station.aside == "conduit-pre-conduitctl"


def test_the_cluster_edition_and_another_cluster_name():
    stations, refusals, layout = keyed(
        [box("conduit-1", "conduit-data-1"), box("conduit-2", "conduit-data-2")],
        {"conduit-1": "a" * 64, "conduit-2": "b" * 64},
    )
    assert (refusals, layout) == ([], "cluster edition")
    steps, refused = plan(stations, cluster="relay")
    assert refused == [] and [s.target_volume for s in steps] == ["relay-data-1", "relay-data-2"]
    assert not any(s.shared_volume for s in steps)


def test_doubts_refuse_the_whole_migration():
    stations, refusals, _ = keyed(
        [box("conduit", "conduit-data"), box("conduit-1", "conduit-data-1"),
         box("conduit-4", None), box("conduit-5", "conduit-data-5"),
         box("conduit-6", "conduit-data-6"), box("conduit-7", "conduit-data-7")],
        {"conduit": "a" * 64, "conduit-1": "d" * 64, "conduit-5": None,
         "conduit-6": "e" * 64, "conduit-7": "e" * 64},
    )  # fmt: skip
    assert any("both `conduit` and `conduit-1`" in r for r in refusals)
    assert any("conduit-4: no volume is mounted at its data dir" in r for r in refusals)
    _, refused = plan(stations, containers=6, our_keys={1: "f" * 64}, ours_running={6},
                      found_names={"conduit-7-pre-conduitctl"})  # fmt: skip
    text = "\n".join(refused)
    assert "conduit-5: its volume conduit-data-5 holds no conduit_key.json" in text
    assert "conduit-7 and conduit-6 hold the same key" in text
    assert "conduit-7 is station 7, but conduit.toml runs 6" in text
    assert "two keys for station 1: conduit's volume conduit-data holds aaaaaaaaaaaa" in text
    assert "conduit-7-pre-conduitctl already exists" in text
    # our own backend on the station's very volume, with its key, running: not two stations
    assert "conduit-6 (conduitctl's) runs beside" not in text


def test_our_key_equal_to_the_stations_is_no_doubt():
    stations, _, _ = keyed([box("conduit", "conduit-data")], {"conduit": "a" * 64})
    assert plan(stations, our_keys={1: "a" * 64})[1] == []


def test_ours_running_beside_a_station_of_another_name_is_refused():
    stations, _, _ = keyed([box("conduit", "conduit-data")], {"conduit": "a" * 64})
    refused = plan(stations, ours_running={1})[1]
    assert refused == ["conduit-1 (conduitctl's) runs beside conduit: stop it first "
                       "(conduitctl down), never two stations at once"]  # fmt: skip


def test_ours_are_never_stations():
    stations, refusals, layout = find_stations([box("conduit-2", "conduit-data-2", ours=True)])
    assert (stations, refusals, layout) == ([], [], "none")


def test_flags_of_the_old_cli():
    stations, _, _ = keyed([box("conduit", "conduit-data")], {})
    assert v1_flags(stations)
    assert not v1_flags([replace(stations[0], args=("start", "--max-common-clients", "5"))])
    assert flag_value(V1, "--max-clients", "-m") == "200"
    assert flag_value(("start", "-b=7"), "--bandwidth", "-b") == "7"
    assert flag_value(("start", "-b"), "-b") is None


def test_a_containers_inspect_document():
    attrs = {
        "Name": "/conduit-2",
        "State": {"Running": True},
        "Config": {"Image": "ghcr.io/ssmirr/conduit/conduit:latest", "Labels": {}},
        "Args": list(V1),
        "Mounts": [{"Type": "bind", "Destination": "/etc/x", "Name": None},
                   {"Type": "volume", "Name": "conduit-data-2",
                    "Destination": "/home/conduit/data"}],
        "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}},
    }  # fmt: skip
    found = found_container(attrs, "/home/conduit/data")
    assert found == box("conduit-2", "conduit-data-2", restart_policy="unless-stopped")
    attrs["Config"]["Labels"] = {"io.conduitctl.owner": "conduitctl"}
    assert found_container(attrs, "/home/conduit/data").ours


def test_on_the_process_runtime_every_key_is_copied_into_a_data_dir():
    """Our keys live in data dirs there: `conduit-data-2` is only the station's volume, so its
    key is copied too, and another key already in our data dir is a doubt."""
    stations, _, _ = keyed(
        [box("conduit", "conduit-data"), box("conduit-2", "conduit-data-2")],
        {"conduit": "a" * 64, "conduit-2": "b" * 64},
    )
    steps, refused = plan(stations, in_volumes=False)
    assert refused == [] and not any(s.shared_volume for s in steps)
    assert steps[1].target_volume == "the data dir of conduit-2"
    _, refused = plan(stations, in_volumes=False, our_keys={2: "f" * 64})
    assert [r.split(":")[0] for r in refused] == ["two keys for station 2"]


def test_on_the_process_runtime_ours_running_beside_a_same_named_station_is_refused():
    stations, _, _ = keyed([box("conduit-2", "conduit-data-2")], {"conduit-2": "b" * 64})
    refused = plan(stations, in_volumes=False, ours_running={2})[1]
    assert any("conduit-2 (conduitctl's) runs beside conduit-2" in r for r in refused)


def test_the_written_config_keeps_the_stations_image_and_their_cli_dialect():
    from conduitctl.app.migrate import _fitted
    from conduitctl.legacy import convert
    from conduitctl.migrate_plan import MigrationPlan
    from conduitctl.ops.migrate import Survey
    from conduitctl.settings import settings_from_dict

    imported = convert({})  # no settings.conf: the stations' own flags are all there is
    settings = settings_from_dict(imported.data, source="migrate")
    stations, _, _ = keyed([box("conduit", "conduit-data"), box("conduit-2", "conduit-data-2")],
                           {"conduit": "a" * 64, "conduit-2": "b" * 64})  # fmt: skip
    steps, _ = plan(stations)
    found = Survey(
        MigrationPlan(steps=steps, refusals=[], layout="standard", image=stations[0].image,
                      v1_flags=v1_flags(stations)),
        {},
    )  # fmt: skip
    fitted = _fitted(settings, imported, found)
    assert fitted.workload.image == "ghcr.io/ssmirr/conduit/conduit:latest"
    assert fitted.workload.flag_dialect == "v1"  # the ssmirr image rejects --max-common-clients
    assert (fitted.workload.max_clients, fitted.workload.bandwidth_mbps) == (200, 5.0)
    assert fitted.cluster.containers == 2


def test_a_station_set_aside_by_an_earlier_run_is_still_that_station():
    stations, refusals, layout = keyed(
        [box("conduit", "conduit-data"), box("conduit-2-pre-conduitctl", "conduit-data-2", False)],
        {"conduit": "a" * 64, "conduit-2": "b" * 64},
    )  # fmt: skip
    assert (refusals, layout) == ([], "standard")
    assert [(s.index, s.container, s.current_name) for s in stations] == [
        (1, "conduit", "conduit"), (2, "conduit-2", "conduit-2-pre-conduitctl")]  # fmt: skip
    steps, refused = plan(stations, found_names={"conduit", "conduit-2-pre-conduitctl"})
    assert refused == [] and [s.done for s in steps] == [False, False]
    # ours runs on its own volume (the key there): that one has moved; only removal is left
    steps, refused = plan(stations, ours_running={2})
    assert refused == [] and [s.done for s in steps] == [False, True]


def test_a_station_beside_its_own_aside_is_refused():
    _, refusals, _ = keyed(
        [box("conduit-2", "conduit-data-2"), box("conduit-2-pre-conduitctl", "conduit-data-2")],
        {"conduit-2": "b" * 64},
    )  # fmt: skip
    assert refusals == [
        "both conduit-2 and conduit-2-pre-conduitctl exist: which one is the station is not "
        "known; remove the one that is not (its volume stays)"
    ]
