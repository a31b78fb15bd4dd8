"""Benchmarks that print figures beside their baselines (DESIGN.md "Performance budget").

`python -m bench` runs every bench module here; `python -m bench.<name> --help` runs one.
"""
