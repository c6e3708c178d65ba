"""conduit-sim: a stand-in for Psiphon Conduit with the same command line (stdlib only).

Usage::

    conduit-sim [--version] [--cli-version V] start [--max-common-clients N]
                      [--bandwidth MBPS] [--metrics-addr HOST:PORT] [--data-dir DIR]
                      [--set KEY=VALUE]... [-v] [simulator options] [fault options]

It speaks one CLI version, as the real binary does: ``--cli-version`` (default
$CONDUIT_SIM_CLI_VERSION, else 2.0.0). Refused as the real CLI refuses them, with its message
after ``Error:`` and exit code 1 (see ``cli_rules``): the other version's flags (2.x:
``--max-clients``, ``-s/--stats-file``; 1.x: ``--max-common-clients``, ``--max-personal-clients``,
``--compartment-id``, ``--set``), ``--bandwidth`` under 1 other than -1, both client limits 0,
personal clients without a compartment, a ``--set`` key outside the allowlist.

Conduit 2.0 flags:

  -m, --max-common-clients N  client slots (default 50; 1.x: ``-m/--max-clients``). Unlike
                              Conduit there is no upper limit of 1000: load tests need more.
  --max-personal-clients N    exported as a metric; no separate slots. Needs a compartment.
  --compartment-id ID         a personal compartment ID (or ``personal_compartment.json`` in
                              the data dir).
  --set KEY=VALUE             repeatable, the CLI's allowlist; the reduced-hours keys
                              (``InproxyReduced*``) lower the client slots in their window.
  -b, --bandwidth MBPS        total bandwidth in Mbps (default 40); -1 means unlimited.
  --metrics-addr HOST:PORT    Prometheus endpoint at http://HOST:PORT/metrics (``:PORT`` =
                              all interfaces); metric names and help as Conduit's.
  -d, --data-dir DIR          holds ``conduit_key.json`` (default ./data), created 0600 on
                              first start and never rewritten; a corrupt one stops the start.
  -s, --stats-file [PATH]     1.x only: write Conduit's stats JSON at every stats tick
                              (default ``stats.json``; a relative path is in the data dir).
  -c, --psiphon-config PATH   accepted and ignored (the simulator talks to no broker).
  -v                          per-connection logs (repeatable).

Simulator options:

  --listen HOST:PORT          repeatable. TCP and UDP on the same port. TCP: greeting line
                              ``CONDUIT-SIM <name> <id>``, then echo under a per-client cap;
                              a full station answers ``BUSY <name>`` and closes. UDP: per
                              source address a session; the first datagram gets the greeting,
                              later ones are echoed; sessions expire when idle.
  --name NAME                 backend name in the greeting (default $CONDUIT_SIM_NAME, else
                              the hostname).
  --client-rate-kbps KBPS     per-client echo cap (default bandwidth / max clients).
  --udp-idle-timeout S        UDP session idle expiry (default 30).
  --stats-interval S          seconds between ``[STATS]`` lines (default 10).

Fault injection (chaos drills, tests). Each one defaults from the environment variable in
brackets, so an image can carry a fault without a change to the command line; a flag wins,
an empty variable counts as unset:

  --crash-after S             exit 1 after S seconds, with a log line on stderr.
                              [CONDUIT_SIM_CRASH_AFTER]
  --hang-after S              stop answering (accepts, reads, /metrics, [STATS]) but stay alive;
                              SIGUSR1 hangs at any time, SIGUSR2 resumes. [CONDUIT_SIM_HANG_AFTER]
  --leak-mb-per-s R           allocate and touch R MB every second, never freed.
                              [CONDUIT_SIM_LEAK_MB_PER_S]
  --session-mb M              hold M MB (allocated and touched) per connected client, TCP
                              connection or UDP session, freed when it leaves: memory that
                              grows with load. [CONDUIT_SIM_SESSION_MB]
  --burn-cpu F                keep F cores busy (0.5 = half of one core). [CONDUIT_SIM_BURN_CPU]

Exit codes: 0 after SIGTERM/SIGINT; 1 on what the real CLI refuses, a runtime error (one line
on stderr: port in use, unwritable data dir, corrupt key) or a simulated crash; 2 on bad
simulator arguments or a bad fault variable (one line naming it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import cli_rules
from .cli_rules import CliRefusal
from .config import (
    DEFAULT_BANDWIDTH_MBPS,
    DEFAULT_MAX_CLIENTS,
    DEFAULT_STATS_INTERVAL,
    DEFAULT_UDP_IDLE_TIMEOUT,
    SimConfig,
    SimError,
    SimUsageError,
    clean_name,
    default_name,
    parse_address,
)

PROG = "conduit-sim"
DEFAULT_DATA_DIR = "./data"
DEFAULT_STATS_FILE = "stats.json"
MAX_BURN_CORES = 64.0


def _number(
    kind: Callable[[str], float], low: float, low_inclusive: bool, high: float | None = None
) -> Callable[[str], float]:
    """An argparse type: a number in range, else a message naming the allowed range."""

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value < low if low_inclusive else value <= low
        if too_low or (high is not None and value > high):
            bound = f">= {low:g}" if low_inclusive else f"> {low:g}"
            if high is not None:
                bound += f" and <= {high:g}"
            raise argparse.ArgumentTypeError(f"{text} must be {bound}")
        return value

    return convert


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def _bandwidth(text: str) -> float:
    """Mbps; -1 (Conduit's spelling) or 0 mean unlimited, any other value must be > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of Mbps") from None
    if value < 0 and value != -1:
        raise argparse.ArgumentTypeError(f"{text} must be > 0, or -1 for unlimited")
    return value


def _address(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


@dataclass(frozen=True)
class FaultOption:
    """One fault flag; ``env`` names the variable that supplies its default."""

    flag: str
    env: str
    convert: Callable[[str], float]
    metavar: str
    help: str
    off: float | None  # the value when neither the flag nor the variable is set

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


FAULT_OPTIONS: tuple[FaultOption, ...] = (
    FaultOption(
        "--crash-after",
        "CONDUIT_SIM_CRASH_AFTER",
        _number(float, 0, True),
        "S",
        "exit 1 after S s",
        None,
    ),
    FaultOption(
        "--hang-after",
        "CONDUIT_SIM_HANG_AFTER",
        _number(float, 0, True),
        "S",
        "stop answering after S s, stay alive (also SIGUSR1; SIGUSR2 resumes)",
        None,
    ),
    FaultOption(
        "--leak-mb-per-s",
        "CONDUIT_SIM_LEAK_MB_PER_S",
        _number(float, 0, True),
        "R",
        "allocate and touch R MB per second, never freed",
        0.0,
    ),
    FaultOption(
        "--session-mb",
        "CONDUIT_SIM_SESSION_MB",
        _number(float, 0, True),
        "M",
        "hold M MB per connected client (TCP or UDP session), freed when it leaves",
        0.0,
    ),
    FaultOption(
        "--burn-cpu",
        "CONDUIT_SIM_BURN_CPU",
        _number(float, 0, True, MAX_BURN_CORES),
        "F",
        "keep F cores busy (0.5 = half of one core)",
        0.0,
    ),
)


def fault_values(ns: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, float | None]:
    """Each fault option's value by dest: the flag, else its environment variable, else off.

    Pure. An empty variable counts as unset, and a variable is not read at all when its flag
    is given (so a flag can override a broken image). Raises SimUsageError naming the
    variable, its value and the fix when a variable that is read is invalid.
    """
    values: dict[str, float | None] = {}
    for option in FAULT_OPTIONS:
        value = getattr(ns, option.dest, None)
        text = environ.get(option.env, "").strip()
        if value is None and text:
            try:
                value = option.convert(text)
            except argparse.ArgumentTypeError as exc:
                raise SimUsageError(
                    f"environment variable {option.env}={text!r}: {exc} "
                    f"(fix or unset it, or pass {option.flag})"
                ) from None
        values[option.dest] = option.off if value is None else value
    return values


def _add_common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # Conduit's -d/-v are root flags that also work after the subcommand; SUPPRESS keeps the
    # subcommand from overwriting a root value with its default.
    default_dir: str | None = argparse.SUPPRESS if suppress else DEFAULT_DATA_DIR
    parser.add_argument(
        "-d", "--data-dir", default=default_dir, help="data directory (default ./data)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS if suppress else 0,
        dest="verbosity",
        help="more output: per-connection logs",
    )
    parser.add_argument(  # the simulator's own: before or after the subcommand
        "--cli-version",
        default=argparse.SUPPRESS if suppress else None,
        metavar="V",
        help=f"the CLI version to behave as (default ${cli_rules.VERSION_ENV}, else "
        f"{cli_rules.DEFAULT_VERSION})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Psiphon Conduit simulator (the CLI of Conduit 2.0, or 1.x)."
    )
    _add_common(parser, suppress=False)
    parser.add_argument("--version", action="store_true", help="print the CLI version")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    start = commands.add_parser("start", help="run the station until SIGTERM/SIGINT")
    _add_common(start, suppress=True)
    start.add_argument(
        "-m",
        "--max-common-clients",
        "--max-clients",
        dest="max_clients",
        type=_count,
        default=None,  # None: not given (the CLI tells "not given" from any value)
        metavar="N",
        help=f"maximum concurrent clients (default {DEFAULT_MAX_CLIENTS})",
    )
    start.add_argument(
        "--max-personal-clients", type=_count, default=0, metavar="N", help="exported only"
    )
    start.add_argument("--compartment-id", metavar="ID", help="personal compartment ID")
    start.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="allowlisted overrides"
    )
    start.add_argument(
        "-b",
        "--bandwidth",
        type=_bandwidth,
        default=None,
        metavar="MBPS",
        help=f"total bandwidth in Mbps, -1 = unlimited (default {DEFAULT_BANDWIDTH_MBPS:g})",
    )
    start.add_argument(
        "--metrics-addr", type=_address, metavar="HOST:PORT", help="serve /metrics here"
    )
    start.add_argument(
        "-s",
        "--stats-file",
        nargs="?",
        const=DEFAULT_STATS_FILE,
        default=None,
        metavar="PATH",
        help="write stats JSON (default stats.json, relative to the data dir)",
    )
    start.add_argument("-c", "--psiphon-config", metavar="PATH", help="ignored")
    start.add_argument(
        "--stats-interval",
        type=_number(float, 0, low_inclusive=False),
        default=DEFAULT_STATS_INTERVAL,
        metavar="S",
        help=f"seconds between [STATS] lines (default {DEFAULT_STATS_INTERVAL:g})",
    )
    start.add_argument(
        "--listen",
        type=_address,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="serve clients on TCP and UDP here (repeatable)",
    )
    start.add_argument(
        "--name", default=None, help="backend name (default $CONDUIT_SIM_NAME or hostname)"
    )
    start.add_argument(
        "--client-rate-kbps",
        type=_number(float, 0, low_inclusive=False),
        metavar="KBPS",
        help="per-client cap (default bandwidth / max clients)",
    )
    start.add_argument(
        "--udp-idle-timeout",
        type=_number(float, 0, low_inclusive=False),
        default=DEFAULT_UDP_IDLE_TIMEOUT,
        metavar="S",
        help=f"expire idle UDP sessions (default {DEFAULT_UDP_IDLE_TIMEOUT:g})",
    )
    faults = start.add_argument_group(
        "fault injection",
        "Each option defaults from the environment variable shown (empty = unset), so an "
        "image can carry a fault; the flag wins.",
    )
    for option in FAULT_OPTIONS:
        faults.add_argument(
            option.flag,
            type=option.convert,
            default=None,  # None = not on the command line: the environment decides
            metavar=option.metavar,
            help=f"{option.help} [${option.env}]",
        )
    return parser


def cli_version(ns: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The CLI version to behave as: the flag, else the variable, else 2.0.0."""
    version = ns.cli_version or environ.get(cli_rules.VERSION_ENV, "").strip()
    version = version or cli_rules.DEFAULT_VERSION
    try:
        cli_rules.major(version)
    except ValueError as exc:
        source = "--cli-version" if ns.cli_version else f"${cli_rules.VERSION_ENV}"
        raise SimUsageError(f"{source}: {exc}") from None
    return version


def _compartment(ns: argparse.Namespace, data_dir: Path) -> str | None:
    """The flag's compartment, else the one `new-compartment-id` saved in the data dir."""
    if ns.compartment_id:
        return str(ns.compartment_id)
    try:
        saved = json.loads((data_dir / cli_rules.COMPARTMENT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return str(saved.get("id") or "") or None if isinstance(saved, dict) else None


def config_from_args(
    ns: argparse.Namespace, environ: Mapping[str, str] | None = None, version: str = "2.0.0"
) -> SimConfig:
    """Turn parsed arguments into the frozen config (reads only ``ns``, the environment and
    a saved compartment in the data dir).

    ``environ`` defaults to ``os.environ``. Raises SimUsageError for a bad fault variable,
    CliRefusal for what the real CLI of `version` refuses.
    """
    faults = fault_values(ns, os.environ if environ is None else environ)
    data_dir = Path(getattr(ns, "data_dir", DEFAULT_DATA_DIR))
    overrides = cli_rules.parse_set(ns.set) if cli_rules.major(version) >= 2 else {}
    compartment = _compartment(ns, data_dir)
    cli_rules.check_start(
        version,
        max_common=DEFAULT_MAX_CLIENTS if ns.max_clients is None else ns.max_clients,
        common_given=ns.max_clients is not None,
        max_personal=ns.max_personal_clients,
        compartment=compartment,
        bandwidth_mbps=DEFAULT_BANDWIDTH_MBPS if ns.bandwidth is None else ns.bandwidth,
        bandwidth_given=ns.bandwidth is not None,
        overrides=overrides,
        limit=None,  # no 1000 ceiling: a load test needs more clients a station
    )
    max_clients = ns.max_clients  # the CLI: the flag, else --set, else the default
    if max_clients is None:
        max_clients = overrides.get("InproxyMaxCommonClients")
    reduced = overrides.get("InproxyReducedMaxCommonClients")
    stats_file: Path | None = None
    if ns.stats_file is not None:
        stats_file = Path(ns.stats_file)
        if not stats_file.is_absolute():
            stats_file = data_dir / stats_file  # Conduit puts relative stats files there
    return SimConfig(
        data_dir=data_dir,
        max_clients=DEFAULT_MAX_CLIENTS if max_clients is None else int(max_clients),
        max_personal_clients=ns.max_personal_clients,
        bandwidth_mbps=DEFAULT_BANDWIDTH_MBPS if ns.bandwidth is None else ns.bandwidth,
        cli_version=version,
        compartment_id=compartment,
        reduced_window=cli_rules.reduced_window(overrides),
        reduced_max_clients=reduced if isinstance(reduced, int) else None,
        metrics_addr=parse_address(ns.metrics_addr) if ns.metrics_addr else None,
        stats_file=stats_file,
        stats_interval=ns.stats_interval,
        verbosity=getattr(ns, "verbosity", 0),
        listen=tuple(parse_address(a) for a in ns.listen),
        name=clean_name(ns.name if ns.name is not None else default_name()),
        client_rate_kbps=ns.client_rate_kbps,
        udp_idle_timeout=ns.udp_idle_timeout,
        crash_after=faults["crash_after"],
        hang_after=faults["hang_after"],
        leak_mb_per_s=faults["leak_mb_per_s"] or 0.0,
        session_mb=faults["session_mb"] or 0.0,
        burn_cpu=faults["burn_cpu"] or 0.0,
    )


def parse_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> SimConfig:
    """Parse a command line (and the fault variables of ``environ``, default ``os.environ``).

    Bad arguments exit 2 via argparse; a bad fault variable exits 2 with one line on stderr.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    ns = parser.parse_args(argv)
    try:
        version = cli_version(ns, environ)
    except SimUsageError as exc:
        parser.exit(2, f"{PROG}: error: {exc}\n")
    if ns.version:
        parser.exit(0, f"conduit version {version}\n")  # cobra's --version line
    if ns.command is None:
        parser.error("the following arguments are required: COMMAND")
    # The real CLI: cobra prints "Error: <why>" and main exits 1.
    flag = cli_rules.unknown_flag(argv, version)
    if flag is not None:
        parser.exit(1, f"Error: unknown flag: {flag}\n")
    try:
        return config_from_args(ns, environ, version)
    except SimUsageError as exc:
        parser.exit(2, f"{PROG}: error: {exc}\n")
    except CliRefusal as exc:
        parser.exit(1, f"Error: {exc}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``conduit-sim``; returns the process exit code."""
    config = parse_args(argv)
    # Imported here so that `--help` and argument errors stay fast.
    from .server import run_station

    try:
        return run_station(config)
    except SimError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0  # SIGINT before the event loop took over signals
    except Exception as exc:
        print(f"{PROG}: unexpected error: {exc!r}", file=sys.stderr, flush=True)
        if config.verbosity >= 1:
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
