"""`conduitctl migrate`: what runs today in conduit-manager's layout, and the plan that moves
each of its stations, with its own key, into this fleet (pure).

The layouts (conduit-manager's `conduit.sh`):
- the standard one: containers `conduit`, `conduit-2`, `conduit-3`, ... on the volumes
  `conduit-data`, `conduit-data-2`, ... (the ssmirr image, or the official one);
- the cluster edition: `conduit-1`, `conduit-2`, ... on `conduit-data-1`, `conduit-data-2`, ...

A station is known by the container's number and by the volume mounted at its data dir: the
key is read from that volume, never guessed from a name. Anything a layout does not explain
(`conduit` beside `conduit-1`, a station with no key, one key in two stations, our own volume
already holding another key, our backend running beside the legacy station) refuses the whole
migration before anything is touched.

A migration stopped half-way (killed, the host rebooted) is picked up where it was: a station
already set aside (`conduit-2-pre-conduitctl`) is still that station, moved when our backend
runs on its key, else handed over from where it stands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conduitctl.labels import volume_name

_STATION = re.compile(r"^conduit(?:-([1-9][0-9]{0,3}))?$")
ASIDE_SUFFIX = "-pre-conduitctl"  # the legacy container's name while ours runs on its key


@dataclass(frozen=True)
class FoundContainer:
    """A container on this host, as docker reports it."""

    name: str
    running: bool
    image: str
    data_volume: str | None  # the volume mounted at the workload's data dir
    args: tuple[str, ...] = ()
    ours: bool = False  # it carries conduitctl's owner or legacy label
    restart_policy: str = "unless-stopped"
    restart_retries: int = 0  # MaximumRetryCount of an on-failure policy


@dataclass(frozen=True)
class Station:
    """One conduit-manager station: its number, container, volume and key."""

    index: int
    container: str
    volume: str
    running: bool
    image: str
    key_sha256: str | None
    args: tuple[str, ...] = ()
    restart_policy: str = "unless-stopped"
    restart_retries: int = 0
    set_aside: bool = False  # an earlier migrate stopped it and renamed it aside already
    # An earlier migrate had touched it: the restart policy above is the journal's, and
    # `ran_before` is whether it ran then (the container shows "no" and stopped now).
    touched: bool = False
    ran_before: bool | None = None

    @property
    def aside(self) -> str:
        return self.container + ASIDE_SUFFIX

    @property
    def ran(self) -> bool:
        """Whether it ran before any migrate touched it: what a way back restores."""
        if self.ran_before is not None:
            return self.ran_before
        return self.running or self.set_aside  # set aside with no journal: it served then

    @property
    def current_name(self) -> str:
        return self.aside if self.set_aside else self.container


@dataclass(frozen=True)
class Step:
    """Hand one station over: its key into `target_volume` (nothing to copy when it is the
    station's own volume), the legacy container stopped and renamed aside, ours started."""

    station: Station
    backend: str
    target_volume: str
    done: bool = False  # an earlier migrate moved it: ours runs on its key; only removal left

    @property
    def shared_volume(self) -> bool:
        return self.target_volume == self.station.volume


@dataclass(frozen=True)
class MigrationPlan:
    steps: list[Step]
    refusals: list[str]
    layout: str  # "standard", "cluster edition" or "none"
    image: str | None = None  # the image the legacy stations run
    v1_flags: bool = False  # they are started with the 1.x flags (--max-clients)
    notes: list[str] = field(default_factory=list)


def station_index(name: str) -> int | None:
    """`conduit` -> 1, `conduit-7` -> 7 (and their aside names); None for any other name."""
    match = _STATION.match(name.removesuffix(ASIDE_SUFFIX))
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) else 1


def find_stations(found: Sequence[FoundContainer]) -> tuple[list[Station], list[str], str]:
    """conduit-manager's stations among `found` (with `keys` read later), the refusals, and
    which layout they are in. Containers conduitctl made are never stations."""
    refusals: list[str] = []
    candidates = [c for c in found if not c.ours and station_index(c.name) is not None]
    names = {c.name.removesuffix(ASIDE_SUFFIX) for c in candidates}
    for c in candidates:
        if c.name.endswith(ASIDE_SUFFIX) and c.name.removesuffix(ASIDE_SUFFIX) in {
            x.name for x in candidates
        }:
            refusals.append(
                f"both {c.name.removesuffix(ASIDE_SUFFIX)} and {c.name} exist: which one is the "
                f"station is not known; remove the one that is not (its volume stays)"
            )
    if "conduit" in names and "conduit-1" in names:
        refusals.append(
            "both `conduit` and `conduit-1` exist: no conduit-manager layout has both, so "
            "which is station 1 is not known; remove or rename the one that is not a station"
        )
    layout = "none"
    if candidates:
        layout = "cluster edition" if "conduit-1" in names else "standard"
    stations = []
    for c in sorted(candidates, key=lambda c: station_index(c.name) or 0):
        if c.data_volume is None:
            refusals.append(
                f"{c.name}: no volume is mounted at its data dir, so its key cannot be found; "
                "a layout conduit-manager makes always has one"
            )
            continue
        stations.append(
            Station(
                index=station_index(c.name) or 0,
                container=c.name.removesuffix(ASIDE_SUFFIX),
                volume=c.data_volume,
                running=c.running,
                image=c.image,
                key_sha256=None,
                args=c.args,
                restart_policy=c.restart_policy,
                restart_retries=c.restart_retries,
                set_aside=c.name.endswith(ASIDE_SUFFIX),
            )
        )
    return stations, refusals, layout


def plan_migration(
    stations: Sequence[Station],
    *,
    cluster: str,
    containers: int,
    our_keys: Mapping[int, str | None],
    ours_running: set[int],
    found_names: set[str],
    in_volumes: bool = True,
    ours_restarting: set[int] | frozenset[int] = frozenset(),
) -> tuple[list[Step], list[str]]:
    """The steps, one station at a time in index order, or the refusals that stop it whole.

    `our_keys`: sha256 of the key each of our volumes holds now (None: none yet, or no
    volume); `ours_running`: indexes whose backend of ours runs or restarts; `found_names`: every
    container name on the host (an aside name must be free); `in_volumes`: our keys live in
    docker volumes named {cluster}-data-{i} (the docker runtime), so a station's volume of
    that name is ours too. The process runtime keeps them in data dirs: always a copy.
    `ours_restarting`: those of `ours_running` docker is restarting: never "moved already",
    so refused as running beside the station until it settles."""
    steps: list[Step] = []
    refusals: list[str] = []
    seen: dict[str, str] = {}
    for s in stations:
        backend = f"{cluster}-{s.index}"
        target = volume_name(cluster, s.index) if in_volumes else f"the data dir of {backend}"
        if s.key_sha256 is None:
            refusals.append(
                f"{s.container}: its volume {s.volume} holds no conduit_key.json, so there is "
                "no identity to carry; start it once so that it makes its key, or remove it"
            )
            continue
        if s.key_sha256 in seen:
            refusals.append(
                f"{s.container} and {seen[s.key_sha256]} hold the same key: two stations on "
                "one key fight at the broker; keep one of them"
            )
        seen[s.key_sha256] = s.container
        if s.index > containers:
            refusals.append(
                f"{s.container} is station {s.index}, but conduit.toml runs "
                f"{containers}; set cluster.containers = {max(x.index for x in stations)}"
            )
        ours = our_keys.get(s.index)
        if target != s.volume and ours is not None and ours != s.key_sha256:
            refusals.append(
                f"two keys for station {s.index}: {s.container}'s volume {s.volume} holds "
                f"{s.key_sha256[:12]}, conduitctl's {target} holds {ours[:12]}; back up and "
                f"set aside the one to drop by hand (conduitctl never overwrites a key)"
            )
        on_its_key = target == s.volume or ours == s.key_sha256
        up = s.index in ours_running and s.index not in ours_restarting
        moved = s.set_aside and up and on_its_key and not s.running
        # On docker a container of ours cannot bear the station's own name: that one is it.
        beside = not (in_volumes and s.container == backend and not s.set_aside)
        if s.index in ours_running and beside and not moved:
            refusals.append(
                f"{backend} (conduitctl's) runs beside {s.current_name}: stop it first "
                f"(conduitctl down), never two stations at once"
            )
        if s.aside in found_names and not s.set_aside:
            refusals.append(f"{s.aside} already exists: remove it, it is where {s.container} goes")
        steps.append(Step(station=s, backend=backend, target_volume=target, done=moved))
    return steps, refusals


def v1_flags(stations: Sequence[Station]) -> bool:
    """Whether the stations are started with the CLI 1.x flags (conduit-manager's ssmirr
    image: --max-clients)."""
    old = ("--max-clients", "--stats-file", "-s")
    return any(arg.split("=", 1)[0] in old for s in stations for arg in s.args)


def flag_value(args: Sequence[str], *names: str) -> str | None:
    """The value of the first of `names` in a command line (``--flag V`` or ``--flag=V``)."""
    for i, arg in enumerate(args):
        flag, sep, value = arg.partition("=")
        if flag in names:
            if sep:
                return value
            return args[i + 1] if i + 1 < len(args) else None
    return None
