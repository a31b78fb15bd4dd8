"""A live server for browser tests: the test's app served by werkzeug on 127.0.0.1 in a
thread, on the test's database; and a Chromium page driven by Playwright."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from werkzeug.serving import make_server

from consent.extensions import db

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class LiveServer:
    """The app served on a free port; `url(path)` gives an absolute address."""

    def __init__(self, app):
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()


@contextmanager
def serve(app):
    """Serve `app` until the block ends. The test's own session is committed and released
    first, so the server's requests see its data and no lock is held against them."""
    db.session.commit()
    db.session.close()
    server = LiveServer(app)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def chromium_page(executable: str):
    """A fresh Chromium page (its own context: no cookies shared between tests)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844})
            page = context.new_page()
            page.set_default_timeout(10_000)
            yield page
            context.close()
        finally:
            browser.close()


def sign_in_page(page, server, email: str, password: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto(server.url("/login"))
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
