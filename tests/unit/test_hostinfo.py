from pathlib import Path

from conduitctl.hostinfo import default_route_interface, render_env
from conduitctl.settings import settings_from_dict


def test_own_state_dir_keeps_pid_and_logs_inside(tmp_path):
    settings = settings_from_dict({"cluster": {"state_dir": str(tmp_path / "s")}})
    env = render_env(settings, Path("conduit.toml"))
    assert env.run_dir == tmp_path / "s/run"
    assert env.log_dir == tmp_path / "s/log"
    assert env.config_path.is_absolute()


def test_default_route_interface_from_route_table(tmp_path):
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway\tFlags\n"
        "lo\t0000007F\t00000000\t0001\n"
        "ens3\t00000000\t0101A8C0\t0003\n"
    )
    assert default_route_interface(str(table)) == "ens3"
    table.write_text("Iface\tDestination\tGateway\tFlags\n")
    assert default_route_interface(str(table)) is None
