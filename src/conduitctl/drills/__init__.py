"""Drills: exercise a running fleet on purpose (load generation, chaos).

Each drill returns a frozen report value with ``to_dict()``; the CLI prints it and owns the
exit code.
"""
