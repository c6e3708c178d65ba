"""The desired fleet now: conduit.toml's launch specs, or, while a staged rollout runs, the
current stage's (the old ones while it rolls back). Core: what the supervisor restarts a
backend with and what `up` would converge to read the same answer here."""

from __future__ import annotations

import logging

from conduitctl.errors import ConduitctlError
from conduitctl.rollout_plan import stage_specs
from conduitctl.rollout_state import Phase, active, settings_pair
from conduitctl.runtime.base import LaunchSpec, launch_specs
from conduitctl.settings import Settings

log = logging.getLogger(__name__)


def fleet_specs(settings: Settings) -> list[LaunchSpec]:
    """What each backend should run now: the current stage's spec during a rollout (the old
    one while it rolls back), else conduit.toml's."""
    state = active(settings.state_dir)
    if state is None:
        return launch_specs(settings)
    try:
        old, new = settings_pair(settings.state_dir)
    except (OSError, ConduitctlError):
        log.warning("rollout files unreadable; using conduit.toml")
        return launch_specs(settings)
    if state.phase is Phase.ROLLING_BACK:
        return launch_specs(old)
    return stage_specs(old, new, state.upgraded, state.clients)
