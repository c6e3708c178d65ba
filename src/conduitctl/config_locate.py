"""Which conduit.toml a command means: --config, else $CONDUITCTL_CONFIG, else ./conduit.toml,
else /etc/conduitctl/conduit.toml. `os` only: the status fast path asks before anything else
is imported."""

from __future__ import annotations

import os

CONFIG_ENV = "CONDUITCTL_CONFIG"
LOCAL_CONFIG = "conduit.toml"
SYSTEM_CONFIG = "/etc/conduitctl/conduit.toml"


def locate(explicit: str | None) -> str:
    if explicit is not None:
        return explicit
    env = os.environ.get(CONFIG_ENV)
    if env:
        return env
    if os.path.exists(LOCAL_CONFIG) or not os.path.exists(SYSTEM_CONFIG):
        return LOCAL_CONFIG
    return SYSTEM_CONFIG
