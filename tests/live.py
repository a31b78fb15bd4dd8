"""A live server for browser tests: the test's app served by werkzeug on 127.0.0.1 in a
thread, on the test's database; Chromium driven by Playwright; and `look`, which screenshots
a page at phone and desktop widths and checks what a person on a phone or with a screen
reader needs (no sideways scrolling, 44 px touch targets, no serious axe violation)."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from pathlib import Path

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
    saved_base = app.config.get("PUBLIC_BASE_URL")
    app.config["PUBLIC_BASE_URL"] = server.base_url  # links in emails and texts come here
    server.start()
    try:
        yield server
    finally:
        server.stop()
        app.config["PUBLIC_BASE_URL"] = saved_base


PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
MIN_TARGET = 44  # px: the height of every button, toggle and choice

TOUCH_TARGETS = (
    "button, input[type=submit], input[type=button], input[type=reset], .button, .btn, "
    ".choice, .toggle, [role=switch]"
)

_SMALL_TARGETS_JS = """([selector, minimum]) => {
  const small = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.checkVisibility({visibilityProperty: true})) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    if (box.height + 0.01 < minimum) {
      const words = (el.innerText || el.value || el.getAttribute('aria-label') || '').trim();
      small.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')} "${words.slice(0, 40)}" ${box.height.toFixed(1)}px`);
    }
  }
  return small;
}"""

_OVERFLOW_JS = """() => {
  const width = window.innerWidth;
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 0.5 && el.checkVisibility()) {
      wide.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${[...el.classList].join('.')} right=${box.right.toFixed(0)}`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: width, wide: wide.slice(0, 8)};
}"""

_axe = None


def axe_violations(page, context: str | None = None) -> list[str]:
    """axe-core's serious and critical violations on the page (or in the part of it that the
    CSS selector `context` names), one line each."""
    global _axe
    if _axe is None:
        from axe_playwright_python.sync_playwright import Axe

        _axe = Axe()
    results = _axe.run(page, context) if context else _axe.run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(" ".join(node["target"]) for node in v["nodes"][:5])
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


_WORDLESS_STATUS_JS = """() => [...document.querySelectorAll('.status')]
  .filter(el => el.checkVisibility() && !el.innerText.trim())
  .map(el => el.outerHTML.slice(0, 80))"""


def look(page, name: str, *, axe: bool = True, touch: bool = True, portal: bool = True) -> None:
    """Screenshot the page at phone and desktop widths into tests/artifacts/{phone,desktop}/
    <name>.png; at phone width nothing may overflow sideways and every visible button,
    toggle and choice must be at least 44 px tall; with `axe`, no serious or critical
    violation; on `portal` pages every status has words and the language switch is there.
    Leaves the page at phone width."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    problems: list[str] = []
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        folder = ARTIFACTS / label
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{safe}.png"), full_page=True)
    overflow = page.evaluate(_OVERFLOW_JS)
    if overflow["scrollWidth"] > overflow["innerWidth"]:
        problems.append(
            f"overflows sideways at {overflow['innerWidth']} px: scrollWidth "
            f"{overflow['scrollWidth']}; widest: {overflow['wide']}"
        )
    if touch:
        small = page.evaluate(_SMALL_TARGETS_JS, [TOUCH_TARGETS, MIN_TARGET])
        problems.extend(f"shorter than {MIN_TARGET} px: {target}" for target in small)
    if portal:
        wordless = page.evaluate(_WORDLESS_STATUS_JS)
        problems.extend(f"a status in colour only: {html}" for html in wordless)
        if page.locator(".lang a[hreflang]").count() != 1:
            problems.append("no language switch")
    if axe:
        problems.extend(f"axe: {v}" for v in axe_violations(page))
    assert not problems, f"{name} ({page.url}):\n" + "\n".join(problems)


@contextmanager
def chromium(executable: str):
    """One Chromium for the whole session (each test opens its own context)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Pages:
    """Fresh browser contexts (no shared cookies: one per person) at phone width."""

    def __init__(self, browser):
        self.browser = browser
        self.contexts = []

    def new(self, **options):
        context = self.browser.new_context(viewport=PHONE, **options)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()


def sign_in_page(page, server, email: str, password: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto(server.url("/login"))
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
