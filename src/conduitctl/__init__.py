"""conduitctl: run a fleet of Psiphon Conduit stations (or identical proxy backends) on one host."""

__version__ = "0.1.0"
