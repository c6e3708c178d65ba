"""The Fleet context: what every command works on, built once (settings, config path, the
resolved state dir, the runtime, the front, the clock)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conduitctl.fleet import backend_order, require_backend
from conduitctl.front import Front, front_for
from conduitctl.hostinfo import render_env
from conduitctl.render.base import RenderEnv
from conduitctl.runtime import Runtime, runtime_for
from conduitctl.settings import Settings, find_config, load_settings
from conduitctl.statedir import StateDir


@dataclass
class Fleet:
    settings: Settings
    config_path: Path
    files: StateDir
    env: RenderEnv
    runtime: Runtime
    front: Front
    clock: Callable[[], float] = field(default=time.time)

    @classmethod
    def load(cls, config: Path | None) -> Fleet:
        """--config, $CONDUITCTL_CONFIG, ./conduit.toml or /etc (settings.find_config)."""
        path = find_config(config)
        return cls.of(load_settings(path), path)

    @classmethod
    def of(cls, settings: Settings, config_path: Path) -> Fleet:
        env = render_env(settings, config_path)
        return cls(
            settings=settings,
            config_path=config_path,
            files=StateDir(settings.state_dir),
            env=env,
            runtime=runtime_for(settings),
            front=front_for(settings, env),
        )

    @property
    def state_dir(self) -> Path:
        return self.files.root

    def front_for(self, settings: Settings) -> Front:
        """The front another version of the settings would have (rollback, rollout)."""
        return front_for(settings, render_env(settings, self.config_path))

    def known_backends(self) -> list[str]:
        """The configured backends and any other this runtime still holds, in index order."""
        names = set(self.settings.backend_names()) | {s.name for s in self.runtime.backends()}
        return sorted(names, key=backend_order)

    def backend(self, name: str) -> str:
        """`name`, checked: one of the configured backends or one the runtime holds.

        Raises BadInput naming the choices."""
        return require_backend(name, self.known_backends())
