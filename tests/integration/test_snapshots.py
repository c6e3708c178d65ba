"""Snapshots: one before every change, holding what the fleet ran before it."""

from __future__ import annotations

import stat

from fleet_helpers import PURGE, cli, cli_json, write_config


def test_a_snapshot_before_each_change_and_none_without(tmp_path, free_block):
    config = write_config(tmp_path, free_block(140), name="snp", containers=2)
    try:
        cli("up", "--config", str(config))
        first = cli_json("snapshots", "--config", str(config))
        assert [s["reason"] for s in first] == ["up"]
        assert first[0]["backends"] == []  # nothing ran before the first up
        cli("up", "--config", str(config))  # no change: no snapshot
        assert len(cli_json("snapshots", "--config", str(config))) == 1
        cli("scale", "3", "--config", str(config))
        snaps = cli_json("snapshots", "--config", str(config))
        assert [s["reason"] for s in snaps] == ["up", "scale"]
        before_scale = snaps[-1]
        assert [b["name"] for b in before_scale["backends"]] == ["snp-1", "snp-2"]
        assert all(b["running"] and b["config_hash"] for b in before_scale["backends"])
        saved = tmp_path / "state/snapshots" / before_scale["id"]
        assert "containers = 2" in (saved / "conduit.toml").read_text()  # the settings before
        assert "upstream" in (saved / "nginx.conf").read_text()  # the front as installed
        assert stat.S_IMODE((saved / "conduit.toml").stat().st_mode) == 0o644
    finally:
        cli(*PURGE, "--config", str(config), check=False)
