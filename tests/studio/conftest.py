"""The studio's fixtures: one app on the local stack (tiny models) and one headless Chromium, shared by
every test of the folder (the browser tests drive them in order, as a user would).

The browser is Debian's ``chromium`` with its ``chromedriver`` (``make studio-browser`` installs both
as root; README, "Development"). Without them these tests fail naming what to install: CI always
runs them, they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

#: Where the browser and its driver are looked for (CHROMIUM / CHROMEDRIVER override them).
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = ("chromedriver",)


def _find(variable: str, names: tuple[str, ...]) -> str:
    found = os.environ.get(variable) or next((p for n in names if (p := shutil.which(n))), None)
    if not found:
        pytest.fail(
            f"the studio's browser tests need {names[0]} on the PATH (or {variable}=PATH): as root "
            "`make studio-browser` (apt-get install chromium chromium-driver); see README, Development",
            pytrace=False,
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Any:
    """The studio on the local stack with the tiny models, served by uvicorn on 127.0.0.1:
    ``studio.url``, ``studio.backend`` (its :class:`~tryon.studio.backend.StackBackend`)."""
    import uvicorn

    from tryon.studio.app import create_app
    from tryon.studio.local_stack import open_local

    with open_local() as backend:
        app = create_app(backend, tmp_path_factory.mktemp("studio-scratch"))
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="studio-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the studio server did not start")
            time.sleep(0.05)

        class Served:
            url = f"http://127.0.0.1:{port}"

        Served.backend = backend
        Served.app = app
        try:
            yield Served
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(studio) -> Any:
    """One headless Chromium (Selenium) for the folder, recording every network request it makes."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _find("CHROMIUM", CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1100", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-default-apps", "--disable-sync"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(_find("CHROMEDRIVER", CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.requests_seen = []  # every request URL, collected from the performance log
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where the tests save a screenshot of each tab: ``TRYON_STUDIO_SCREENSHOTS`` (docs/images to
    refresh the README's), else a temporary folder."""
    target = os.environ.get("TRYON_STUDIO_SCREENSHOTS")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
