"""The application layer: a Fleet context built once per command, and the one change protocol
every mutating command goes through (cli -> app -> core <- edges)."""
