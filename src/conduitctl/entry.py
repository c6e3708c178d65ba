"""The `conduitctl` command: `status` served by the running supervisor when it can be
(conduitctl.fast_status, nothing heavy imported), else the full CLI."""

from __future__ import annotations

import sys


def main() -> int:
    from conduitctl.fast_status import run

    try:
        served = run(sys.argv[1:])
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:  # `status | head`: the reader left, as the full command says
        return 1
    if served is not None:
        return served
    from conduitctl.cli import main as cli_main

    return cli_main()
