"""The systemd unit of the supervisor daemon (pure).

KillMode=process: stopping or restarting the daemon signals the daemon alone, so the backends
and the front it started keep serving, and the next daemon adopts them. As root the unit is a
system unit with hardening that still allows driving docker and nginx/haproxy; as non-root it
is a user unit (ProtectSystem, PrivateTmp and the *Directory= settings need a system manager).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from conduitctl import __version__
from conduitctl.render.base import Rendered, RenderEnv, render_template
from conduitctl.settings import Settings

FILENAME = "conduitctl.service"
DAEMON_NOFILE = 1_048_576  # LimitNOFILE: process backends inherit it; fs.nr_open must allow it
USER_NOFILE = 524_288  # a user unit cannot exceed the user manager's hard limit (this default)
UNIT_NAME = "conduitctl"
# systemd's *Directory= settings create these under its fixed roots (as a system unit).
_MANAGED_DIRS = (
    ("StateDirectory", Path("/var/lib")),
    ("LogsDirectory", Path("/var/log")),
    ("RuntimeDirectory", Path("/run")),
)
_HOME_ROOTS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))


def unit_escape(word: str) -> str:
    """One word for a unit file: `%` is a specifier, whitespace and quotes need quoting."""
    word = word.replace("%", "%%")
    if any(c in word for c in " \t\"'\\"):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def _under(path: Path, roots: tuple[PurePosixPath, ...]) -> bool:
    p = PurePosixPath(path)
    return any(p == root or root in p.parents for root in roots)


def _directories(env: RenderEnv) -> list[str]:
    """StateDirectory= & co, only for a dir that is exactly /var/lib/conduitctl (and so on)."""
    lines = []
    dirs = {"StateDirectory": env.state_dir, "LogsDirectory": env.log_dir}
    dirs["RuntimeDirectory"] = env.run_dir
    for setting, root in _MANAGED_DIRS:
        if dirs[setting] == root / UNIT_NAME:
            lines.append(f"{setting}={UNIT_NAME}")
            if setting == "RuntimeDirectory":
                # Keep pid files and sockets when the daemon stops: the fleet is still running.
                lines.append("RuntimeDirectoryPreserve=yes")
    return lines


def render(settings: Settings, env: RenderEnv) -> Rendered:
    docker = settings.cluster.runtime == "docker"
    after = ["network-online.target"] + (["docker.service"] if docker else [])
    exec_start = " ".join(
        unit_escape(w) for w in (env.conduitctl_bin, "daemon", "--config", str(env.config_path))
    )
    paths = (env.state_dir, env.log_dir, env.run_dir)
    # "-": a path that does not exist yet does not fail the start (the daemon creates it).
    read_write = " ".join(unit_escape(f"-{p}") for p in dict.fromkeys(paths))
    text = render_template(
        "conduitctl.service.j2",
        version=__version__,
        is_root=env.is_root,
        cluster=settings.cluster.name,
        after=" ".join(after),
        # Wants, not Requires: a docker restart must not stop the supervisor (live-restore
        # keeps the containers up meanwhile).
        wants=" ".join(after),
        exec_start=exec_start,
        nofile=DAEMON_NOFILE if env.is_root else USER_NOFILE,
        protect_home=not any(_under(p, _HOME_ROOTS) for p in paths),
        directories=_directories(env),
        read_write_paths=read_write,
        wanted_by="multi-user.target" if env.is_root else "default.target",
    )
    return Rendered(text=text, filename=FILENAME)
