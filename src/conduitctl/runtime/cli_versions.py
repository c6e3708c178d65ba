"""Which Conduit CLI an image holds: `IMAGE --version` in a throwaway container, and when
that names no version (the published image is a "dev" build), `IMAGE start --help`'s flags.
Asked once per image id (an id never changes what it holds); the answers are kept in
STATE_DIR/cli-versions.json.

The container has no network, no capabilities, a read-only root and 10 s: an image that
does not know the flag and starts a station instead reaches nobody and is killed, and is
remembered as naming no version. A probe dockerd failed is asked again next time, never
remembered.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from conduitctl.conduit_cli import cli_version, dialect_in_help
from conduitctl.statedir import write_atomic

log = logging.getLogger(__name__)
ASK_TIMEOUT_S = 10.0


class _Hung(Exception):
    """The probe ran ASK_TIMEOUT_S without exiting."""


def _still_running(container: Any) -> bool:
    try:
        container.reload()
    except Exception:  # gone, or dockerd gone: not known to hang
        return False
    return bool(container.status == "running")


class CliVersions:
    def __init__(self, client: Any, cache: Path | None = None) -> None:
        self.client = client
        self.cache = cache
        self._known: dict[str, str] = {}

    def version(self, image_id: str) -> str | None:
        """The CLI version ("2.0.0", or "2" / "1" when only its flags tell), or None when
        it names none."""
        if image_id not in self._known:
            self._known.update(self._read())  # another process may have asked meanwhile
        if image_id not in self._known:
            answer = self._ask(image_id)
            if answer is None:
                return None  # not answered: asked again next time
            self._known[image_id] = answer
            self._save()
        return self._known[image_id] or None

    def _ask(self, image_id: str) -> str | None:
        """What the image says ("" for no version), or None when it could not be asked."""
        try:
            printed = self._run(image_id, ["--version"])
            if printed is None:
                return None
            version = cli_version(printed)
            if version is not None:
                return version
            helped = self._run(image_id, ["start", "--help"])
        except _Hung:
            return ""  # it does not answer as a CLI does: no version, and no second wait
        return None if helped is None else dialect_in_help(helped) or ""

    def _run(self, image_id: str, args: list[str]) -> str | None:
        """Its output (stdout and stderr), or None when dockerd could not run it. Raises _Hung
        when it ran ASK_TIMEOUT_S without exiting."""
        container = None
        try:
            container = self.client.containers.create(
                image_id, args, network_mode="none", read_only=True, cap_drop=["ALL"],
                security_opt=["no-new-privileges:true"], pids_limit=64, mem_limit="128m",
                labels={"io.conduitctl.probe": "cli-version"},
            )  # fmt: skip
            container.start()
            container.wait(timeout=ASK_TIMEOUT_S)
            return str(container.logs(stdout=True, stderr=True).decode(errors="replace"))
        except Exception as exc:
            # A wait that times out surfaces as ReadTimeout or as a ConnectionError (docker-py
            # #1966): what tells is that the probe still runs.
            if container is not None and _still_running(container):
                raise _Hung() from None
            # dockerd's own error: not an answer
            log.warning("cli version not known", extra={"image": image_id[:19], "error": str(exc)})
            return None
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)

    def _read(self) -> dict[str, str]:
        if self.cache is None:
            return {}
        try:
            data = json.loads(self.cache.read_text())
            return {str(k): str(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _save(self) -> None:
        if self.cache is None:
            return
        try:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            known = {**self._read(), **self._known}
            write_atomic(self.cache, json.dumps(known, indent=1, sort_keys=True) + "\n",
                         secret=False)  # fmt: skip
        except OSError as exc:  # only a cache: the next command asks again
            log.warning("cli versions not saved", extra={"error": str(exc)})
