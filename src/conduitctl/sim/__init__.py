"""conduit-sim: a stdlib-only stand-in for Psiphon Conduit (same CLI, stats and metrics).

Everything in this package except ``image`` must import only the standard library: the
modules are copied as they are into a bare Debian image that has nothing but python3.
"""
