"""Browser-test harness of the web app (tests/test_web.py, and the library and people pages' tests):
headless Debian chromium through chromium-driver and selenium, the real API app served by waitress
(as `heimdex serve` does), a sign-in through a real one-time link, axe-core injected into the page,
and the browser console read back.

    with served(engine) as base, Browser() as b:
        b.sign_in(base, engine)          # a one-time link of org "default", as `heimdex serve` prints
        b.open(base + "/?q=lighthouse")
        b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, ".hit"))
        assert b.axe_violations() == [] and b.console_errors() == []

Everything waits for conditions (WebDriverWait), never for fixed times.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import waitress
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from heimdex.api.app import create_app
from heimdex.api.web import new_signin_link

ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / ".cache" / "web" / "node_modules" / "axe-core" / "axe.min.js"  # scripts/setup.sh
WAIT_S = 60.0  # the ceiling of a wait on a loaded 2-core machine; waits end as soon as they can
SERIOUS = ("serious", "critical")


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{' or '.join(names)} is not installed: run scripts/setup.sh (apt chromium chromium-driver)")


@contextmanager
def served(engine: Any, threads: int = 8) -> Iterator[str]:
    """The real API app (web pages included) on a free local port: its base URL."""
    server = waitress.create_server(create_app(engine), host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()


class Browser:
    """A headless chromium; a context manager that quits it."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = _binary("chromium", "chromium-browser")
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            f"--window-size={width},{height}",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver: WebDriver = webdriver.Chrome(
            options=options, service=Service(_binary("chromedriver", "chromium-driver"))
        )
        self.driver.set_script_timeout(WAIT_S)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.driver.quit()

    def open(self, url: str) -> None:
        self.driver.get(url)

    def wait_for(self, condition: Callable[[WebDriver], Any], timeout: float = WAIT_S, what: str = "") -> Any:
        """The condition's first truthy value; fails with `what` (and the page's console) on timeout."""
        try:
            # A page that redraws as it polls may replace an element between finding and reading it:
            # the condition is asked again.
            wait = WebDriverWait(
                self.driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
            )
            return wait.until(condition)
        except Exception as exc:
            raise AssertionError(
                f"timed out waiting for {what or condition}; console: {self.console()}"
            ) from exc

    def sign_in(self, base: str, engine: Any, org: str = "default") -> None:
        """Follow a fresh one-time sign-in link (as `heimdex serve` prints) and wait for the app."""
        self.open(new_signin_link(engine.db, org, base, 600))
        self.wait_for(lambda d: d.get_cookie("heimdex_session"), what="the session cookie")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def console(self) -> list[dict[str, Any]]:
        """Browser console entries since the last call (the driver hands each out once)."""
        got: list[dict[str, Any]] = self.driver.get_log("browser")
        self._seen = [*getattr(self, "_seen", []), *got]
        return got

    def console_errors(self) -> list[str]:
        """SEVERE console entries since the browser started (errors, failed loads, CSP refusals)."""
        self.console()
        return [e["message"] for e in self._seen if e.get("level") == "SEVERE"]

    def forget_console(self) -> None:
        """Drop what the console held so far (after a test provoked errors on purpose)."""
        self.console()
        self._seen = []

    def axe_violations(self, impacts: tuple[str, ...] = SERIOUS) -> list[dict[str, Any]]:
        """axe-core's violations of the page as it is now, of those impacts: id, impact, nodes."""
        if not AXE.exists():
            pytest.fail(f"{AXE} is missing: run scripts/setup.sh (npm install axe-core@4)")
        self.js(AXE.read_text())
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document).then(r => done(JSON.stringify(r.violations)), e => done(JSON.stringify("
            "[{id: 'axe-failed', impact: 'critical', help: String(e), nodes: []}])));"
        )
        return [
            {
                "id": v["id"],
                "impact": v["impact"],
                "help": v["help"],
                "nodes": [n["html"] for n in v["nodes"]][:3],
            }
            for v in json.loads(result)
            if v.get("impact") in impacts
        ]
