"""Which Conduit CLI an image holds: `IMAGE --version` in a throwaway container, once per
image id (an id never changes what it holds), kept in STATE_DIR/cli-versions.json.

The container has no network, no capabilities, a read-only root and 10 s: an image that
does not know `--version` and starts a station instead reaches nobody and is killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from conduitctl.conduit_cli import cli_version
from conduitctl.statedir import write_atomic

log = logging.getLogger(__name__)
ASK_TIMEOUT_S = 10.0


class CliVersions:
    def __init__(self, client: Any, cache: Path | None = None) -> None:
        self.client = client
        self.cache = cache
        self._known: dict[str, str] | None = None

    def version(self, image_id: str) -> str | None:
        """The CLI version the image prints, or None when it prints none (remembered too:
        "" in the cache)."""
        known = self._load()
        if image_id not in known:
            known[image_id] = self._ask(image_id) or ""
            self._save()
        return known[image_id] or None

    def _ask(self, image_id: str) -> str | None:
        import docker.errors

        container = None
        try:
            container = self.client.containers.run(
                image_id, ["--version"], detach=True, network_mode="none", read_only=True,
                cap_drop=["ALL"], security_opt=["no-new-privileges:true"], pids_limit=64,
                mem_limit="128m", labels={"io.conduitctl.probe": "cli-version"},
            )  # fmt: skip
            container.wait(timeout=ASK_TIMEOUT_S)
            output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        except Exception as exc:  # dockerd's error, or requests' own when the wait times out
            log.warning("cli version not known", extra={"image": image_id[:19], "error": str(exc)})
            return None
        finally:
            if container is not None:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
        return cli_version(output)

    def _load(self) -> dict[str, str]:
        if self._known is None:
            self._known = {}
            if self.cache is not None:
                try:
                    data = json.loads(self.cache.read_text())
                    self._known = {str(k): str(v) for k, v in data.items()}
                except (OSError, ValueError, AttributeError):
                    pass
        return self._known

    def _save(self) -> None:
        if self.cache is None or self._known is None:
            return
        try:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.cache, json.dumps(self._known, indent=1) + "\n", secret=False)
        except OSError as exc:  # only a cache: the next command asks again
            log.warning("cli versions not saved", extra={"error": str(exc)})
