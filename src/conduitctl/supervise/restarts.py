"""The restart policy (pure): exponential backoff per backend, crash-loop detection.

A crash loop never stops the restarts (a station that comes back after an hour still serves
its clients, as Kubernetes' CrashLoopBackOff never gives up): it is said once, and the
backoff may then grow to `loop_backoff_max`. Only deaths before the backend stayed healthy
for `stable_after` count towards one; a healthy run that long ends the loop and resets the
backoff."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class RestartPolicy:
    backoff: float = 1.0  # first delay after the first restart; the very first is immediate
    backoff_max: float = 60.0
    loop_restarts: int = 5  # this many restarts within `loop_window` is a crash loop
    loop_window: float = 300.0
    stable_after: float = 60.0  # healthy this long resets the backoff and the loop's count
    loop_backoff_max: float = 300.0  # in a crash loop, the backoff's cap


@dataclass(frozen=True)
class RestartState:
    attempts: int = 0  # restarts since the backend was last stable
    recent: tuple[float, ...] = field(default_factory=tuple)  # restart times inside the window
    next_at: float = 0.0  # no restart before this
    crash_loop: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "attempts": self.attempts,
            "recent": list(self.recent),
            "next_at": self.next_at,
            "crash_loop": self.crash_loop,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RestartState:
        recent = data.get("recent", [])
        return cls(
            attempts=int(data.get("attempts", 0)),  # type: ignore[call-overload]
            recent=tuple(float(t) for t in recent) if isinstance(recent, list) else (),
            next_at=float(data.get("next_at", 0.0)),  # type: ignore[arg-type]
            crash_loop=bool(data.get("crash_loop", False)),
        )


def delay(policy: RestartPolicy, attempts: int, crash_loop: bool = False) -> float:
    """0 for the first restart, then backoff, 2 x backoff, ... up to backoff_max (in a
    crash loop, up to loop_backoff_max)."""
    if attempts <= 0:
        return 0.0
    cap = max(policy.loop_backoff_max, policy.backoff_max) if crash_loop else policy.backoff_max
    return min(policy.backoff * 2 ** min(attempts - 1, 62), cap)


def may_restart(state: RestartState, now: float) -> bool:
    """Its backoff has passed. A crash loop only slows restarts down, never stops them."""
    return now >= state.next_at


def record_restart(policy: RestartPolicy, state: RestartState, now: float) -> RestartState:
    """After a restart: count it and set the next allowed time."""
    recent = (*(t for t in state.recent if now - t < policy.loop_window), now)
    attempts = state.attempts + 1
    wait = delay(policy, attempts, state.crash_loop)
    return RestartState(attempts, recent, now + wait, state.crash_loop)


def exhausted(policy: RestartPolicy, state: RestartState, now: float) -> bool:
    """It died again after `loop_restarts` restarts inside the window: a crash loop."""
    return sum(now - t < policy.loop_window for t in state.recent) >= policy.loop_restarts


def declare_loop(state: RestartState) -> RestartState:
    return replace(state, crash_loop=True)


def record_stable(
    policy: RestartPolicy, state: RestartState, healthy_since: float, now: float
) -> RestartState:
    """Healthy for `stable_after`: the backoff starts over, the deaths before no longer count
    towards a crash loop, and a crash loop is over."""
    stable = now - healthy_since >= policy.stable_after
    if stable and (state.attempts or state.recent or state.crash_loop):
        return RestartState()
    return state


def reset(state: RestartState) -> RestartState:
    """An operator restarted it (up, restart): forget the crash loop."""
    return RestartState()
