"""The restart policy (pure): exponential backoff per backend, crash-loop detection."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class RestartPolicy:
    backoff: float = 1.0  # first delay after the first restart; the very first is immediate
    backoff_max: float = 60.0
    loop_restarts: int = 5  # this many restarts within `loop_window` is a crash loop
    loop_window: float = 300.0
    stable_after: float = 60.0  # healthy this long resets the backoff


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


def delay(policy: RestartPolicy, attempts: int) -> float:
    """0 for the first restart, then backoff, 2 x backoff, ... up to backoff_max."""
    if attempts <= 0:
        return 0.0
    return min(policy.backoff * 2 ** (attempts - 1), policy.backoff_max)


def may_restart(state: RestartState, now: float) -> bool:
    return not state.crash_loop and now >= state.next_at


def record_restart(policy: RestartPolicy, state: RestartState, now: float) -> RestartState:
    """After a restart: count it and set the next allowed time."""
    recent = (*(t for t in state.recent if now - t < policy.loop_window), now)
    attempts = state.attempts + 1
    return RestartState(attempts=attempts, recent=recent, next_at=now + delay(policy, attempts))


def exhausted(policy: RestartPolicy, state: RestartState, now: float) -> bool:
    """It died again after `loop_restarts` restarts inside the window: a crash loop."""
    return sum(now - t < policy.loop_window for t in state.recent) >= policy.loop_restarts


def declare_loop(state: RestartState) -> RestartState:
    return replace(state, crash_loop=True)


def record_stable(
    policy: RestartPolicy, state: RestartState, healthy_since: float, now: float
) -> RestartState:
    """Healthy for `stable_after`: the backoff starts over (the crash-loop window stays)."""
    if state.attempts and now - healthy_since >= policy.stable_after:
        return replace(state, attempts=0, next_at=0.0)
    return state


def reset(state: RestartState) -> RestartState:
    """An operator restarted it (up, restart): forget the crash loop."""
    return RestartState()
