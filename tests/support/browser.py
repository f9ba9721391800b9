"""A real headless browser for tests of pages: Debian's chromium driven by selenium (apt packages
chromium and chromium-driver). Screenshots go to build/screenshots/ (RAYEVAL_SCREENSHOTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

__all__ = ["CHROMEDRIVER", "CHROMIUM", "SHOTS", "needs_chromium", "open_browser"]

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
#: Where tests put their screenshots.
SHOTS = Path(os.environ.get("RAYEVAL_SCREENSHOTS", REPO / "build" / "screenshots"))
#: Skips a test where the browser is not installed.
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (apt packages)"
)


def open_browser() -> Iterator[Any]:
    """A headless Chromium session (for a fixture: `yield from open_browser()`), quit at the end."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1300,1000"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
