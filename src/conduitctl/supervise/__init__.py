"""The supervisor: health hysteresis, restart policy and the per-tick plan (pure), and the
daemon loop that observes, plans and acts (daemon.py)."""
