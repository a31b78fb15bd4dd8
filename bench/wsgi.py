"""The app that bench.server_load serves under gunicorn: the real app on the benchmark
database ($BENCH_DATABASE_URL), plus one bare route, `/bench/bare`, that touches neither the
database nor a template: the baseline of the server's throughput. Only this module adds it.

    BENCH_DATABASE_URL=... gunicorn -w 2 -b 127.0.0.1:8000 bench.wsgi:app
"""

from __future__ import annotations

import os

from bench.dataset import app_for

app = app_for(os.environ["BENCH_DATABASE_URL"])


@app.get("/bench/bare")
def bare():
    """A bare Flask route: the throughput ceiling of the same server, same workers."""
    return {"ok": True}
