"""`conduitctl migrate`: from conduit-manager to this fleet, every key carried.

The config: conduit.toml when there is one; else written from settings.conf (as
`import-settings` does) and what the stations run (their count, their client and bandwidth
flags). Then ops/migrate.py's survey, refused whole on any doubt, and, with --yes, the
hand-over through the change protocol, and `up` for the rest (the front, the supervisor).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from conduitctl.app.change import Progress, changing, converge, record, snapshot
from conduitctl.app.context import Fleet
from conduitctl.errors import BadInput, not_utf8
from conduitctl.legacy import Imported, convert, parse_settings_conf
from conduitctl.migrate_plan import flag_value
from conduitctl.ops.migrate import ManagerHost, Migrated, Survey, hand_over, refuse, survey
from conduitctl.settings import Settings, find_config, load_settings, settings_from_dict
from conduitctl.settings_file import holds_secrets, settings_to_toml, write_config

DEFAULT_SETTINGS_CONF = Path("/opt/conduit/settings.conf")
# settings.conf keys that name a feature conduitctl does not have yet: said, never dropped
NOT_YET = {"DATA_CAP_GB": "a traffic quota across the fleet is not built yet"}


def load_settings_conf(source: Path) -> Imported:
    """conduit-manager's settings.conf, converted (`import-settings`, `migrate`)."""
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise BadInput(
            f"{source}: cannot read ({exc.strerror}); pass the path of conduit-manager's "
            "settings.conf"
        ) from None
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise BadInput(not_utf8(str(source), data, exc)) from None
    return convert(parse_settings_conf(text, str(source)), str(source))


@dataclass(frozen=True)
class Migration:
    fleet: Fleet
    surveyed: Survey
    config_text: str | None  # the conduit.toml to write (None: one exists already)
    not_carried: list[str] = field(default_factory=list)
    host: ManagerHost | None = None
    migrated: Migrated | None = None  # None: shown, not done (no --yes)


def prepare(config: Path | None, settings_conf: Path | None, host_for: Any) -> Migration:
    """The config (read or made) and the surveyed plan; nothing written. `host_for(settings)`
    gives conduit-manager's side (a ManagerHost)."""
    path = find_config(config)
    text: str | None = None
    not_carried: list[str] = []
    if path.exists():
        settings = load_settings(path)
        host = host_for(settings)
    else:
        imported, header = _imported(settings_conf)
        not_carried = [f"{k}: {NOT_YET.get(k, 'no conduitctl setting')}" for k in imported.ignored]
        settings = settings_from_dict(imported.data, source="migrate")
        host = host_for(settings)
        first = survey(settings, Fleet.of(settings, path).runtime, host)
        settings = _fitted(settings, imported, first)
        carried = [f"Not carried over: {'; '.join(not_carried)}."] if not_carried else []
        text = settings_to_toml(settings, header + carried)
    fleet = Fleet.of(settings, path)
    surveyed = _surveyed(fleet, host, writes_config=text is not None)
    return Migration(fleet, surveyed, text, not_carried, host=host)


def _surveyed(fleet: Fleet, host: ManagerHost, *, writes_config: bool) -> Survey:
    """The survey; with `writes_config`, stations on two images are refused too: the config
    written for them could keep only one."""
    surveyed = survey(fleet.settings, fleet.runtime, host, journal=fleet.files.migration)
    images = sorted({step.station.image for step in surveyed.plan.steps})
    if writes_config and len(images) > 1:
        surveyed.plan.refusals.append(
            f"the stations run {len(images)} images ({', '.join(images)}) and this fleet runs "
            "one: write conduit.toml with the workload.image to keep (import-settings), then "
            "run migrate again"
        )
    return surveyed


def carry_out(migration: Migration, progress: Progress) -> Migration:
    """The hand-over (refused whole first, and again under the operator lock, on a fresh
    look), then `up` for the front and the supervisor."""
    refuse(migration.surveyed.plan)
    fleet, host = migration.fleet, migration.host
    assert host is not None
    with changing(fleet, fleet.settings.backend_names()):
        # what runs now, not when the plan was shown
        surveyed = _surveyed(fleet, host, writes_config=migration.config_text is not None)
        refuse(surveyed.plan)
        if migration.config_text is not None:
            write_config(migration.config_text, fleet.config_path,
                         secret=holds_secrets(fleet.settings))  # fmt: skip
            progress(f"wrote {fleet.config_path}")
        taken = snapshot(fleet, "migrate", progress)
        done = hand_over(fleet.settings, fleet.runtime, host, surveyed, fleet.files,
                         progress=progress)  # fmt: skip
        record(fleet, "migrate", f"migrate: {len(done.moved)} stations from conduit-manager",
               snapshot=taken, moved=done.moved)  # fmt: skip
    converge(fleet, reason="migrate", progress=progress)
    return replace(migration, surveyed=surveyed, migrated=done)


def _imported(settings_conf: Path | None) -> tuple[Imported, list[str]]:
    source = settings_conf or (DEFAULT_SETTINGS_CONF if DEFAULT_SETTINGS_CONF.exists() else None)
    if source is None:
        empty = convert({})
        return empty, ["Written by conduitctl migrate from the conduit-manager stations found."]
    return load_settings_conf(source), [f"Written by conduitctl migrate from {source}."]


def _fitted(settings: Settings, imported: Imported, found: Survey) -> Settings:
    """The imported settings, made to hold every station found: enough containers, the image
    and the CLI dialect they run, and the client and bandwidth flags they run with where
    settings.conf did not say."""
    stations = [step.station for step in found.plan.steps]
    if not stations:
        return settings
    workload = dict(imported.data["workload"])
    if found.plan.image and found.plan.image != settings.workload.effective_image:
        workload["image"] = found.plan.image  # the image they run is the one known to work
    if found.plan.v1_flags:
        workload["flag_dialect"] = "v1"  # it rejects the CLI 2.0 flags
    args = stations[0].args
    clients = flag_value(args, "--max-common-clients", "--max-clients", "-m")
    bandwidth = flag_value(args, "--bandwidth", "-b")
    if "MAX_CLIENTS" not in imported.given and clients and clients.isdigit():
        workload["max_clients"] = int(clients)
    if "BANDWIDTH" not in imported.given and bandwidth:
        with contextlib.suppress(ValueError):  # not a number: settings.conf's value stays
            workload["bandwidth_mbps"] = float(bandwidth)
    cluster = dict(imported.data["cluster"])
    cluster["containers"] = max(cluster.get("containers", 1), max(s.index for s in stations))
    return settings_from_dict({**imported.data, "workload": workload, "cluster": cluster},
                              source="migrate")  # fmt: skip
