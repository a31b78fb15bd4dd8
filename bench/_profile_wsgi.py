"""bench.wsgi's app with a pyinstrument profile of the requests for one path: where a page's
time goes under gunicorn (issue 18 asks for the profile of a figure that misses).

    BENCH_DATABASE_URL=... PROFILE_PATH=/account/settings PROFILE_OUT=/tmp/profile.txt \
        gunicorn -w 1 -b 127.0.0.1:8000 bench._profile_wsgi:app

then send it the requests (a signed-in cookie for portal pages); every 200 requests of the path
the profile so far (all of them, combined) is written to PROFILE_OUT with the mean time. Needs
pyinstrument (the "bench" extra). Not run by `python -m bench`.
"""

import os
import time

from pyinstrument import Profiler

from bench.wsgi import app as flask_app

PATH = os.environ.get("PROFILE_PATH", "/account/settings")
OUT = os.environ.get("PROFILE_OUT", "/tmp/wsgi_profile.txt")
profiler = Profiler(interval=0.0005)
seen = {"n": 0, "t": 0.0}


def app(environ, start_response):
    if environ.get("PATH_INFO") != PATH:
        return flask_app(environ, start_response)
    started = time.perf_counter()
    profiler.start()
    try:
        return list(flask_app(environ, start_response))
    finally:
        profiler.stop()
        seen["n"] += 1
        seen["t"] += time.perf_counter() - started
        if seen["n"] % 200 == 0:
            with open(OUT, "w") as out:
                out.write(f"{seen['n']} requests, {seen['t'] / seen['n'] * 1000:.2f} ms each\n")
                out.write(profiler.output_text(unicode=False, color=False))
