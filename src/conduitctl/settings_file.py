"""Writing conduit.toml: a commented file from a Settings value, saved atomically.

Files that hold secrets (notifier URLs) are written 0600 from the start.
"""

from __future__ import annotations

import json
from pathlib import Path

from conduitctl.errors import BadInput
from conduitctl.render.base import templates
from conduitctl.settings import Settings, parse_settings
from conduitctl.statedir import config_holds_secrets, write_atomic
from conduitctl.units import format_duration, format_size


def toml_value(value: object) -> str:
    """A TOML literal for the simple values conduit.toml uses."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and value.is_integer():
            return f"{value:.1f}"  # keep it a float in TOML
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # TOML basic strings share JSON's escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table; its keys quoted, whatever they hold
        return (
            "{ "
            + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items())
            + " }"
        )
    if hasattr(value, "value"):  # enums
        return toml_value(value.value)
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def settings_to_toml(settings: Settings, header: list[str] | None = None) -> str:
    """The commented conduit.toml for these settings; it parses back to equal settings."""
    env = templates()
    env.filters.update(toml=toml_value, size=format_size, duration=format_duration)
    text = env.get_template("conduit.toml.j2").render(s=settings, header=header or [])
    if parse_settings(text, source="generated conduit.toml") != settings:
        raise AssertionError("generated conduit.toml does not round-trip")  # a template bug
    return text


def holds_secrets(settings: Settings) -> bool:
    return bool(settings.alerts.notifiers)


def write_config(text: str, path: Path, *, secret: bool, force: bool = False) -> None:
    """Write atomically (statedir.write_atomic). Refuses to replace a file unless `force`."""
    if path.exists() and not force:
        raise BadInput(f"{path} already exists; pass --force to replace it or -o another path")
    write_atomic(path, text, secret=secret)


def replace_config(text: str, path: Path) -> None:
    """Rewrite conduit.toml atomically. Its mode comes from the new text (0600 when it holds
    a secret, whatever the old file's mode was), and a private file never becomes readable."""
    was_private = path.exists() and (path.stat().st_mode & 0o077) == 0
    write_config(text, path, secret=was_private or config_holds_secrets(text), force=True)
