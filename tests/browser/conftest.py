"""Real headless Chromium (Debian's package) driven by Playwright."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs it.")
        pytest.skip("Chromium is not installed (apt-get install chromium); CI always runs these.")
    # Playwright's sync API refuses to run inside a running event loop; the
    # Django ORM in the same thread must then be told that's fine.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


AXE = (
    Path(__file__).resolve().parents[2]
    / "docs"
    / "tools"
    / "node_modules"
    / "axe-core"
    / "axe.min.js"
)
PHONE = {"width": 390, "height": 844}
NARROW = {"width": 360, "height": 740}  # the narrowest phone the pages are built for
DESKTOP = {"width": 1280, "height": 800}


class Watched:
    """A page whose console errors and failed requests are collected, so a test can
    assert that none happened on any page it visited."""

    def _request_failed(self, request) -> None:
        # A favicon fetch that the browser abandons because the test already moved
        # on to the next page is not a failure of the page (it 404s or 500s otherwise,
        # and the response hook reports that).
        if request.failure == "net::ERR_ABORTED" and request.url.endswith("/favicon.svg"):
            return
        self.problems.append(f"request failed: {request.url} {request.failure}")

    def __init__(self, page):
        self.page = page
        self.problems: list[str] = []
        page.on(
            "console",
            lambda msg: msg.type == "error" and self.problems.append(f"console: {msg.text}"),
        )
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", self._request_failed)
        page.on(
            "response",
            lambda res: res.status >= 400 and self.problems.append(f"HTTP {res.status}: {res.url}"),
        )

    def check(self, name: str, shots: Path | None = None) -> None:
        """No horizontal overflow, no serious or critical axe-core violation; and a
        screenshot when asked."""
        page = self.page
        page.wait_for_load_state("load")
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1], f"{name}: the page is wider than the screen {widths}"
        if not AXE.exists():
            if os.environ.get("CI"):
                pytest.fail("axe-core is missing; .ci/run installs it (npm ci --prefix docs/tools)")
        else:
            page.add_script_tag(path=str(AXE))
            violations = page.evaluate(
                "async () => (await axe.run(document, {resultTypes: ['violations']}))"
                ".violations.filter(v => ['serious', 'critical'].includes(v.impact))"
                ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
            )
            assert violations == [], f"{name}: {violations}"
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


@pytest.fixture
def watched(browser):
    pages = []

    def open_page(viewport=DESKTOP) -> Watched:
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.set_default_timeout(10_000)
        pages.append(Watched(page))
        return pages[-1]

    yield open_page
    for watched_page in pages:
        problems = watched_page.problems
        watched_page.page.context.close()
        assert problems == [], problems
