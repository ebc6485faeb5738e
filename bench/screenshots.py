"""`make screenshots`: a PNG of each page of the web app, from a fresh demo index, into
docs/screenshots/ (the README shows them).

    make screenshots                                  # every page this checkout has
    make screenshots PAGES="search watch"             # some of them

The demo's sample clips (heimdex.dev.samples) are made and indexed into a new HEIMDEX_HOME in a
temporary folder (its own embedded PostgreSQL), the real API app is served on a free local port,
a headless chromium (tests/browser.py) signs in through a one-time link and visits each page.
A page is a function below (SHOTS): it opens the page and waits for what the picture should show.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from selenium.webdriver.common.by import By
from tests.browser import Browser, served

from heimdex import logs
from heimdex.config import Settings
from heimdex.dev.samples import make_samples
from heimdex.embedded.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
QUERY = "the harbour fire after midnight"
# The player shows the moment's frame and has stopped loading (no spinner in the picture).
FRAME_SHOWN = (
    "const v = document.getElementById('player');"
    " return v && !v.seeking && v.readyState >= 3 && v.networkState !== v.NETWORK_LOADING"
)


def search(b: Browser, base: str) -> None:
    b.open(f"{base}/?q={quote(QUERY)}")
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "ol.results li.hit"), what="results")
    b.wait_for(
        lambda d: b.js("return [...document.images].every(i => i.complete && i.naturalWidth > 0)"),
        what="thumbnails",
    )
    b.js("document.activeElement.blur()")


def watch(b: Browser, base: str) -> None:
    search(b, base)
    b.driver.find_element(By.CSS_SELECTOR, "a.hit-link").click()
    b.wait_for(
        lambda d: b.js(FRAME_SHOWN),
        what="the frame at the moment",
    )
    # Chrome's controls show a loading spinner on a player that has not played yet: play a moment.
    at = b.js("return document.getElementById('player').currentTime")
    b.js("document.getElementById('player').play()")
    b.wait_for(lambda d: b.js("return document.getElementById('player').currentTime") > at + 0.5, what="play")
    b.js("document.getElementById('player').pause()")
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "button.line[aria-current=true]"), what="line")
    b.wait_for(lambda d: b.js("return [...document.images].every(i => i.complete)"), what="scene strip")


def library(b: Browser, base: str) -> None:
    b.open(f"{base}/library")
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "main table, main ol, main ul"), what="the library")


def people(b: Browser, base: str) -> None:
    b.open(f"{base}/people")
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "main h1"), what="the people page")


def signin(b: Browser, base: str) -> None:
    b.driver.delete_cookie("heimdex_session")
    b.open(f"{base}/")
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "section.signin"), what="the sign-in page")


SHOTS: dict[str, Callable[[Browser, str], None]] = {
    "search": search,
    "watch": watch,
    "library": library,
    "people": people,
    "signin": signin,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pages", nargs="*", default=list(SHOTS), help=f"of {', '.join(SHOTS)} (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    unknown = [p for p in args.pages if p not in SHOTS]
    if unknown:
        parser.error(f"unknown page(s): {', '.join(unknown)}")
    logs.setup("WARNING")
    logging.getLogger("heimdex").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="heimdex-screenshots-") as tmp:
        clips = make_samples(Path(tmp) / "samples")
        engine = Engine(Settings(home=Path(tmp) / "home", database_url=None))
        try:
            results = engine.index(clips, org="default")
            failed = [r for r in results if r.status != "ready"]
            if failed:
                raise SystemExit(f"indexing failed: {failed}")
            with served(engine) as base, Browser(1280, 1000) as b:
                for page in args.pages:
                    if page != "signin" and not b.driver.get_cookie("heimdex_session"):
                        b.sign_in(base, engine)
                    SHOTS[page](b, base)
                    path = args.out / f"{page}.png"
                    b.driver.save_screenshot(str(path))
                    print(
                        f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}",
                        file=sys.stderr,
                    )
        finally:
            engine.close()


if __name__ == "__main__":
    main()
