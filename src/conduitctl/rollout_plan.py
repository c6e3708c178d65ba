"""Staged rollout, the pure part: which changes a rollout may carry, its stages and client
steps, the fleet's specs at each stage, and the gates judged on samples during a soak.

A rollout moves backends from the settings the fleet runs (old) to conduit.toml (new) in
index order: stage k runs the first stages[k] backends on the new settings, the rest on the
old ones. During stage k the new backends may run at a lower max clients (clients_steps[k]).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from itertools import pairwise

from conduitctl.errors import BadInput
from conduitctl.runtime.base import LaunchSpec, launch_specs
from conduitctl.settings import Settings

# What a rollout may not change: it replaces backends, it does not move or resize the fleet.
FIXED = (
    ("cluster.name", lambda s: s.cluster.name),
    ("cluster.runtime", lambda s: s.cluster.runtime),
    ("cluster.containers", lambda s: s.cluster.containers),
    ("cluster.state_dir", lambda s: s.state_dir),
    ("workload.profile", lambda s: s.workload.profile),
    ("workload.listen_port_base", lambda s: s.workload.listen_port_base),
    ("workload.metrics_port_base", lambda s: s.workload.metrics_port_base),
    ("front", lambda s: s.front),
)
CPU_WINDOW = 5  # samples averaged for the CPU gate (a start-up burst is not a failure)
MIN_PROBES = 5  # the error ratio is judged once this many probes were made


def check_change(old: Settings, new: Settings) -> None:
    """BadInput unless new differs from old only in what a rollout can stage."""
    for key, read in FIXED:
        if read(old) != read(new):
            raise BadInput(
                f"a rollout replaces backends; this change also sets {key} "
                f"({read(old)!r} -> {read(new)!r}): apply that part with `conduitctl up` first"
            )
    if [s.config_hash() for s in launch_specs(old)] == [s.config_hash() for s in launch_specs(new)]:
        raise BadInput(
            "conduit.toml matches what the fleet runs: nothing to roll out; edit it first"
        )


def default_stages(count: int) -> list[int]:
    """1, about half, all: the canary, then half the fleet, then the rest."""
    return sorted({1, max(1, count // 2), count})


def parse_stages(text: str | None, count: int) -> list[int]:
    if not text:
        return default_stages(count)
    try:
        stages = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInput(f"--stages {text!r}: give backend counts like 1,4,{count}") from None
    if not stages or any(b <= a for a, b in pairwise(stages)):
        raise BadInput(f"--stages {text!r}: counts must rise, e.g. 1,4,{count}")
    if stages[0] < 1 or stages[-1] != count:
        raise BadInput(
            f"--stages {text!r}: each count is 1..{count} and the last is the whole fleet "
            f"({count}), e.g. 1,{max(1, count // 2)},{count}"
        )
    return stages


def parse_steps(text: str | None, stages: list[int], max_clients: int) -> list[int] | None:
    """Max clients of the new backends at each stage; the last stage runs the configured
    value (a list one shorter than the stages implies it)."""
    if not text:
        return None
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInput(f"--clients-steps {text!r}: give client counts like 50,200") from None
    if len(steps) == len(stages) - 1:
        steps.append(max_clients)
    if len(steps) != len(stages):
        raise BadInput(
            f"--clients-steps {text!r}: one count per stage ({len(stages)}), or one fewer "
            f"(the last stage runs workload.max_clients = {max_clients})"
        )
    if steps[-1] != max_clients:
        raise BadInput(
            f"--clients-steps {text!r}: the last stage must run workload.max_clients "
            f"({max_clients}): the rollout ends on conduit.toml"
        )
    if any(not 1 <= s <= max_clients for s in steps) or steps != sorted(steps):
        raise BadInput(f"--clients-steps {text!r}: rising counts within 1..{max_clients}")
    return steps


def stage_specs(
    old: Settings, new: Settings, upgraded: int, clients: int | None = None
) -> list[LaunchSpec]:
    """The fleet at a stage: the first `upgraded` backends on the new settings (at `clients`
    max clients when the stage caps them), the others as they were."""
    specs = []
    for before, after in zip(launch_specs(old), launch_specs(new), strict=True):
        if after.backend.index > upgraded:
            specs.append(before)
        elif clients is None or clients == after.backend.max_clients:
            specs.append(after)
        else:
            specs.append(replace(after, backend=replace(after.backend, max_clients=clients)))
    return specs


# --- gates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gates:
    max_cpu_percent: float = 90.0  # of the backend's CPU limit, averaged over CPU_WINDOW
    max_memory_percent: float = 90.0  # of the backend's memory limit
    max_error_ratio: float = 0.01  # failed probes of the new backends / probes

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Sample:
    """One backend, once, during a soak."""

    name: str
    upgraded: bool
    running: bool
    instance: str | None  # pid or container id + start time: a change means it restarted
    ready: bool
    oom: bool
    cpu_percent: float | None = None
    memory_percent: float | None = None


@dataclass
class Soak:
    """What a soak has seen so far (the gates' memory)."""

    instances: dict[str, str | None] = field(default_factory=dict)  # at the soak's start
    probes: int = 0
    failed: int = 0
    cpu: dict[str, deque[float]] = field(default_factory=dict)

    @property
    def error_ratio(self) -> float:
        return self.failed / self.probes if self.probes else 0.0


def judge(soak: Soak, samples: list[Sample], gates: Gates) -> str | None:
    """Add one round of samples; the first failed gate, in words, or None."""
    for s in samples:
        if s.oom:
            return f"{s.name} was OOM-killed"
        first = soak.instances.setdefault(s.name, s.instance)
        if not s.running:
            return f"{s.name} is down"
        if first is not None and s.instance != first:
            return f"{s.name} restarted during the soak"
        if not s.upgraded:
            continue
        soak.probes += 1
        soak.failed += not s.ready
        if s.memory_percent is not None and s.memory_percent > gates.max_memory_percent:
            return (
                f"{s.name} uses {s.memory_percent:.0f}% of its memory limit "
                f"(gate {gates.max_memory_percent:g}%)"
            )
        if s.cpu_percent is not None:
            window = soak.cpu.setdefault(s.name, deque(maxlen=CPU_WINDOW))
            window.append(s.cpu_percent)
            mean = sum(window) / len(window)
            if len(window) == CPU_WINDOW and mean > gates.max_cpu_percent:
                return (
                    f"{s.name} uses {mean:.0f}% of its CPU limit (gate {gates.max_cpu_percent:g}%)"
                )
    if soak.probes >= MIN_PROBES and soak.error_ratio > gates.max_error_ratio:
        return (
            f"{soak.failed} of {soak.probes} probes of the new backends failed "
            f"(ratio {soak.error_ratio:.3f}, gate {gates.max_error_ratio:g})"
        )
    return None
