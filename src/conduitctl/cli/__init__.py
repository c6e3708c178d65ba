"""The conduitctl command line: parse, call the application layer, print a table or one JSON
document. One module per command group; only this package turns errors into exit codes:
0 ok, 1 a check failed, 2 bad input.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback

import typer

# Each command module registers its commands on `app` when it is imported; this order is
# the order of `conduitctl --help`.
# isort: off
from conduitctl.cli import setup, migrate, fleet, operate, supervisor, change, drills  # noqa: F401

# isort: on
from conduitctl.cli.common import app, err
from conduitctl.errors import ConduitctlError, shorten


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; known errors become one line and an exit code, never a traceback."""
    from conduitctl.logs import setup_logging

    # A library's warning (urllib3, apprise, docker) reaches stderr through the redacting
    # handler, never Python's bare last-resort one; `daemon` sets up its own.
    setup_logging(level="warning")
    for handler in logging.getLogger().handlers:  # `alerts test` reports apprise's results
        handler.addFilter(lambda record: not record.name.startswith("apprise"))
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="conduitctl", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: unknown option, bad value...
        ctx = getattr(exc, "ctx", None)
        hint = f"; see `{ctx.command_path} --help`" if ctx else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err.print(f"error: {shorten(message)}{hint}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except ConduitctlError as exc:
        err.print(f"error: {shorten(str(exc))}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception:
        fd, log_path = tempfile.mkstemp(prefix="conduitctl-error-", suffix=".log")
        with os.fdopen(fd, "w") as handle:
            handle.write(traceback.format_exc())
        err.print(
            f"unexpected error: {sys.exc_info()[1]!r}; traceback in {log_path}", soft_wrap=True
        )
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
