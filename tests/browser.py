"""The system's Chromium, headless, driven by Playwright (never Playwright's own browser download): for the
labeling page's tests. `make test` installs Debian's chromium when it is missing."""

from __future__ import annotations

import contextlib
import shutil

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps calling Google's hosts, which a machine without a network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Chromium found: scripts/ensure_system_packages.sh --browser installs it")


@contextlib.contextmanager
def browser_page(width: int = 1100, height: int = 820):
    """A fresh page in a fresh headless Chromium (its own empty profile)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context.new_page()
        finally:
            browser.close()
