"""logrotate policy for every `*.log` conduitctl and its front write under the log dir (pure).

One block, copytruncate: the daemon, process-runtime backends, rsyslog and nginx keep their
files open, and copytruncate needs no signal to any of them (the template says why).
"""

from __future__ import annotations

from conduitctl import __version__
from conduitctl.render.base import Rendered, RenderEnv, render_template
from conduitctl.settings import Settings

FILENAME = "conduitctl"
STATE_FILE = "logrotate.state"  # non-root installs keep their own logrotate state here


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
        log_dir=env.log_dir,
        state_file=env.state_dir / STATE_FILE,
        maxsize=logrotate_size(settings.container.log_max_size),
        rotate=settings.container.log_max_files,
    )
    return Rendered(text=text, filename=FILENAME)
