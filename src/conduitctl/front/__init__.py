"""The L4 front's lifecycle: nginx or HAProxy as its own process tree under the state dir."""

from __future__ import annotations

from conduitctl.front.base import Front, FrontStatus, front_for

__all__ = ["Front", "FrontStatus", "front_for"]
