"""A small load generator, run in its own process: `python -m bench._load < spec.json`.

The spec: {"host", "port", "seconds", "threads", "requests": [[method, path, headers, body],
...], "pause": [low, high] (optional)}. Each thread keeps one HTTP/1.1 connection (http.client,
reopened when the server closes it, as gunicorn's sync workers do after each response) and sends
the requests in turn until the time is up, with a random pause of `pause` seconds between two
(a person reading the page: locust's `wait_time = between(low, high)`) when given; with a
pause, each thread also starts after a random wait of up to `high` (people arrive one by one,
as locust spawns its users over time, not all in the same millisecond: a start in step would
queue every thread behind the others once and put that one queue in the percentiles). Prints
{"requests", "errors", "seconds", "rps", "p50_ms", "p95_ms", "p99_ms"}.
"""

from __future__ import annotations

import http.client
import json
import random
import sys
import threading
import time


def run(spec: dict) -> dict:
    host, port = spec["host"], spec["port"]
    requests = [
        (method, path, headers or {}, body.encode() if isinstance(body, str) else body)
        for method, path, headers, body in spec["requests"]
    ]
    deadline_box = {}
    latencies: list[list[float]] = []
    errors = [0]
    lock = threading.Lock()
    start_gate = threading.Barrier(spec["threads"] + 1)
    pause = spec.get("pause")

    def worker(offset: int) -> None:
        mine: list[float] = []
        latencies.append(mine)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        index = offset
        start_gate.wait()
        deadline = deadline_box["deadline"]
        if pause:
            time.sleep(random.uniform(0, pause[1]))
        while True:
            method, path, headers, body = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            if started >= deadline:
                break
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            mine.append(time.perf_counter() - started)
            if not ok:
                with lock:
                    errors[0] += 1
            if pause:
                time.sleep(random.uniform(*pause))
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(spec["threads"])]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline_box["deadline"] = began + spec["seconds"]
    start_gate.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    every = sorted(x for mine in latencies for x in mine)
    count = len(every)

    def pct(p: float) -> float:
        if not every:
            return 0.0
        return every[min(count - 1, max(0, round(p / 100 * count) - 1))] * 1000

    return {
        "requests": count,
        "errors": errors[0],
        "seconds": elapsed,
        "rps": count / elapsed if elapsed else 0.0,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
    }


if __name__ == "__main__":
    print(json.dumps(run(json.load(sys.stdin))))
