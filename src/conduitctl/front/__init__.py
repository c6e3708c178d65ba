"""The L4 front's lifecycle: nginx or HAProxy as its own process tree under the state dir."""

from __future__ import annotations

from conduitctl.front.base import Front, FrontStatus, NoFront
from conduitctl.render.base import RenderEnv
from conduitctl.settings import Settings


def front_for(settings: Settings, env: RenderEnv) -> Front:
    """The front of these settings, by front.kind (implementations imported only when used)."""
    if settings.front.kind == "nginx":
        from conduitctl.front.nginx import NginxFront

        return NginxFront(settings, env)
    if settings.front.kind == "haproxy":
        from conduitctl.front.haproxy import HaproxyFront

        return HaproxyFront(settings, env)
    return NoFront(settings)


__all__ = ["Front", "FrontStatus", "front_for"]
