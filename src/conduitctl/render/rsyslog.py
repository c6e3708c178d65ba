"""rsyslog drop-in: the fleet's syslog messages go to their own files under the log dir (pure).

Messages tagged `conduitctl` (the daemon; its unit sets SyslogIdentifier=conduitctl), `conduit`
or `<cluster>-N` (a backend) are written to two files and then dropped from further processing.
The files end in .log, so the logrotate policy rotates them too.
"""

from __future__ import annotations

from conduitctl import __version__
from conduitctl.render.base import Rendered, RenderEnv, render_template
from conduitctl.settings import Settings

FILENAME = "30-conduitctl.conf"
DAEMON_FILE = "syslog-conduitctl.log"  # not conduitctl.log: the daemon may write that one itself
FLEET_FILE = "syslog-conduit.log"
QUEUE_SIZE = 20_000  # messages held in memory at most
DISCARD_MARK = 18_000  # past this fill, info and debug messages are dropped first


def render(settings: Settings, env: RenderEnv) -> Rendered:
    text = render_template(
        "rsyslog.conf.j2",
        version=__version__,
        cluster=settings.cluster.name,
        daemon_file=env.log_dir / DAEMON_FILE,
        fleet_file=env.log_dir / FLEET_FILE,
        queue_size=QUEUE_SIZE,
        discard_mark=DISCARD_MARK,
    )
    return Rendered(text=text, filename=FILENAME)
