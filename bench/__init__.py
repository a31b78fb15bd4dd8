"""Benchmarks that print figures beside their baselines (README "Performance").

`python -m bench` runs every bench module here; `python -m bench.<name> --help` runs one.
"""
