"""The app under gunicorn (several worker processes) on 127.0.0.1, for concurrency tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def gunicorn(database_url: str, workers: int = 3, **settings: str):
    """Serve `run:app` with `workers` processes until the block ends; yields the base URL."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "gunicorn-test-secret",
        "EMAIL_TRANSPORT": "record",
        "RATELIMIT_ENABLED": "0",
        "API_KEYS": "test-api-key",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        **settings,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
        + ["--graceful-timeout", "5", "--log-level", "warning", "run:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/healthz", timeout=10).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.communicate(timeout=5)[0].decode(errors="replace")
                raise RuntimeError(f"gunicorn did not start:\n{output}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
