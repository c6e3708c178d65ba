"""Derived conduit-sim images for tests: the simulator plus faults baked into its environment.

A "faulty release" is the base image with ``CONDUIT_SIM_*`` variables added, so the control
plane runs it with its usual command line and the fault comes with the image. Built with the
Docker SDK from a one-line-per-variable Dockerfile; nothing is pulled.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

BASE_IMAGE = "conduit-sim:local"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def faulty_dockerfile(env: dict[str, str], base: str = BASE_IMAGE) -> str:
    """The Dockerfile text: ``FROM base`` and one ``ENV`` line per variable (pure).

    Values are JSON-quoted (Dockerfile ENV unquotes double-quoted strings), so spaces and
    quotes survive. Raises ValueError for a name that is not a shell variable name.
    """
    lines = [f"FROM {base}"]
    for name, value in sorted(env.items()):
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        lines.append(f"ENV {name}={json.dumps(value)}")
    return "\n".join(lines) + "\n"


def _client() -> Any:
    import docker

    return docker.from_env(timeout=120)


def build_faulty_image(tag: str, env: dict[str, str], base: str = BASE_IMAGE) -> str:
    """Build ``tag`` FROM ``base`` (a local image) with ``env`` added; returns ``tag``.

    Nothing is pulled (``pull=False``; the build runs with no network). Raises
    docker.errors.BuildError or APIError when the build fails, e.g. ``base`` does not exist.
    """
    client = _client()
    try:
        with tempfile.TemporaryDirectory(prefix="conduit-sim-faulty-") as tmp:
            (Path(tmp) / "Dockerfile").write_text(faulty_dockerfile(env, base))
            client.images.build(
                path=tmp,
                tag=tag,
                pull=False,
                rm=True,
                forcerm=True,
                network_mode="none",
                labels={"conduitctl.test": "sim-faulty-image"},
            )
    finally:
        client.close()
    return tag


def remove_faulty_image(tag: str) -> None:
    """Remove the image ``tag`` (forced, so it goes even if a container still uses it).

    Removing only the tag leaves the base image's layers alone. Missing already is fine.
    """
    from docker.errors import ImageNotFound

    client = _client()
    try:
        client.images.remove(tag, force=True)
    except ImageNotFound:
        pass
    finally:
        client.close()
