"""logrotate policy for the files under the log dir that nothing else rotates (pure).

The daemon rotates daemon.log itself (size-based, in-process) and each process backend's
shim rotates its own log, so neither is listed: two rotators of one file lose lines. Listed:
the front's logs, rsyslog's files, and the detached daemon's and rollout driver's output.
One block, copytruncate: their writers keep the files open, and copytruncate needs no signal
to any of them (the template says why).
"""

from __future__ import annotations

from conduitctl import __version__
from conduitctl.render import haproxy, nginx, rsyslog
from conduitctl.render.base import Rendered, RenderEnv, render_template
from conduitctl.settings import Settings
from conduitctl.statedir import StateDir

FILENAME = "conduitctl"
# The front's logs, rsyslog's files, and the stdout of what `up` and the supervisor detach.
ROTATED = (
    nginx.ERROR_LOG,
    nginx.ACCESS_LOG,
    haproxy.LOG_FILE,
    rsyslog.DAEMON_FILE,
    rsyslog.FLEET_FILE,
    "daemon.out",
    "rollout.out",
)


def logrotate_size(n_bytes: int) -> str:
    """A size in logrotate's syntax: bytes, or an exact k/M/G multiple (logrotate wants k, M, G)."""
    for suffix, factor in (("G", 1024**3), ("M", 1024**2), ("k", 1024)):
        if n_bytes >= factor and n_bytes % factor == 0:
            return f"{n_bytes // factor}{suffix}"
    return str(n_bytes)


def render(settings: Settings, env: RenderEnv) -> Rendered:
    text = render_template(
        "logrotate.conf.j2",
        version=__version__,
        is_root=env.is_root,
        files=[env.log_dir / name for name in ROTATED],
        state_file=StateDir(env.state_dir).logrotate_state,
        maxsize=logrotate_size(settings.container.log_max_size),
        rotate=settings.container.log_max_files,
    )
    return Rendered(text=text, filename=FILENAME)
