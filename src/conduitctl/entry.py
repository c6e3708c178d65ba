"""The `conduitctl` command: `status` served by the running supervisor when it can be
(conduitctl.fast_status, nothing heavy imported), else the full CLI."""

from __future__ import annotations

import sys


def main() -> int:
    from conduitctl.fast_status import run

    served = run(sys.argv[1:])
    if served is not None:
        return served
    from conduitctl.cli import main as cli_main

    return cli_main()
