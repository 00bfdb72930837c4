"""Browser tests: Playwright drives Debian's Chromium (never a downloaded browser) against
the running local stack's console at ``/``, as a person uses it: clicks, drops, typed
text, and assertions on what is on screen.

Every test writes a screenshot of each view it reaches to ``build/screenshots/``
(``shot(page, name)``); a failing test leaves a Playwright trace under
``build/playwright/`` (``--tracing retain-on-failure``, in pyproject's addopts).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import ROOT, Client, Stack

# What a person waits for on a busy 2-core machine (analyses and training run alongside);
# a test that waits longer for something says so itself.
expect.set_options(timeout=30_000)

pytestmark = pytest.mark.browser

SHOTS = ROOT / "build" / "screenshots"
CHROMIUM = os.environ.get("CRUCIBLE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture(scope="session")
def base_url(stack: Stack) -> str:
    built = ROOT / "console" / "dist" / "index.html"
    assert built.is_file(), "the console is not built: run `make console` (make test does)"
    return stack.base + "/"


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1440, "height": 900}}


@pytest.fixture(autouse=True)
def _loopback_only(page):
    """No test reaches past loopback: any request elsewhere is refused (and fails the test)."""
    escaped: list[str] = []

    def guard(route):
        host = route.request.url.split("/")[2].split(":")[0]
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
            return route.continue_()
        escaped.append(route.request.url)
        return route.abort()

    page.route("**/*", guard)
    yield
    assert not escaped, f"requests past loopback: {escaped}"


def shot(page, name: str) -> Path:
    """A screenshot of the page as it is now: build/screenshots/<name>.png. Then a scroll
    there and back: after Chromium's full-page capture the next click can land elsewhere
    until the page scrolls (seen: a form's button pressed, the form itself clicked)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.evaluate("() => { scrollBy(0, 1); scrollBy(0, -1); }")
    return path


def signed_in(page, client: Client, hash_path: str = "/"):
    """``page`` open on the console at ``#<hash_path>`` as ``client`` (its token stored as
    the sign-in form stores it; tests/browser/test_home.py signs in through the form)."""
    page.add_init_script(f"localStorage.setItem('crucible.token', {client.token!r});")
    page.goto(f"#{hash_path}")
    page.get_by_test_id("who").filter(has_text=client.email).wait_for()
    return page


def canvas_is_drawn(page, selector: str) -> bool:
    """Whether the canvas ``selector`` has pixels of more than one colour (not blank)."""
    return page.eval_on_selector(
        selector,
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  for (let i = 4; i < d.length; i += 4)
                    if (d[i] !== d[0] || d[i+1] !== d[1] || d[i+2] !== d[2] || d[i+3] !== d[3]) return true;
                  return false; }""",
    )
