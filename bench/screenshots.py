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


def _upload(b: Browser, path: Path, phase: str) -> None:
    """Upload a file from the library page and wait until its panel reaches `phase`."""
    b.driver.find_element(By.ID, "upload-file").send_keys(str(path))
    b.wait_for(
        lambda d: d.find_element(By.CSS_SELECTOR, ".upload-panel").get_attribute("data-phase") == phase,
        timeout=600,
        what=f"{path.name} to be {phase}",
    )


def library(b: Browser, base: str) -> None:
    """The demo's clips, plus two uploaded from the page itself: real faces (for the people page,
    tests/face_media.py) and a corrupt file, whose row shows why it failed."""
    from tests import face_media

    b.open(f"{base}/library")
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "table.assets tbody tr"), what="the library")
    with tempfile.TemporaryDirectory(prefix="heimdex-shot-media-") as tmp:
        photos = face_media.face_photos(Path(tmp))
        interview = face_media.compose(
            Path(tmp) / "press conference.mp4",
            [("still", str(photos["obama.jpg"]), 3), ("bars", "", 2), ("still", str(photos["biden.jpg"]), 3)],
            captions={0: "PRESS CONFERENCE"},
        )
        _upload(b, interview, "indexed")
        broken = Path(tmp) / "corrupt.mp4"
        broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64)
        _upload(b, broken, "failed")
    b.wait_for(
        lambda d: b.js("return !document.querySelector('tr[data-status=processing]')"), what="all done"
    )
    b.js("document.activeElement.blur()")


def people(b: Browser, base: str) -> None:
    """After `library` (its uploaded clip has two faces): one named from the page, one not."""
    b.open(f"{base}/people")
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "main h1"), what="the people page")
    cards = b.driver.find_elements(By.CSS_SELECTOR, "li.person")
    if cards and not any(c.find_elements(By.CSS_SELECTOR, ".name:not(.unnamed)") for c in cards):
        # The clip shows Obama first (0-3 s): name the person seen at the start.
        first = b.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all(arguments[0].map(id => fetch('/v1/people/' + id).then(r => r.json())))"
            ".then(ps => done(ps.find(p => p.appearances.some(a => a.start < 1)).id));",
            [c.get_attribute("data-person") for c in cards],
        )
        card = b.driver.find_element(By.CSS_SELECTOR, f'li.person[data-person="{first}"]')
        card.find_element(By.CSS_SELECTOR, "button.rename-button").click()
        field = b.wait_for(
            lambda d: d.find_element(By.CSS_SELECTOR, "form.rename input"), what="the name field"
        )
        field.send_keys("Barack Obama\n")
        b.wait_for(
            lambda d: d.find_elements(By.CSS_SELECTOR, "li.person .name:not(.unnamed)"), what="the name"
        )
    b.wait_for(
        lambda d: b.js("return [...document.images].every(i => i.complete && i.naturalWidth > 0)"),
        what="the faces",
    )
    b.js("document.activeElement.blur()")


def person(b: Browser, base: str) -> None:
    """A person's page (the one `people` named): their appearances."""
    b.open(f"{base}/people")
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "li.person .name"), what="the people")
    named = b.driver.find_elements(By.CSS_SELECTOR, "li.person .name:not(.unnamed)")
    link = named[0] if named else b.driver.find_element(By.CSS_SELECTOR, "li.person .name")
    link.click()
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "main h2"), what="the person's page")
    b.wait_for(
        lambda d: b.js("return [...document.images].every(i => i.complete && i.naturalWidth > 0)"),
        what="the faces",
    )


def signin(b: Browser, base: str) -> None:
    b.driver.delete_cookie("heimdex_session")
    b.open(f"{base}/")
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "section.signin"), what="the sign-in page")


SHOTS: dict[str, Callable[[Browser, str], None]] = {
    "search": search,
    "watch": watch,
    "library": library,
    "people": people,  # after library: it uploads the clip with faces
    "person": person,
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
