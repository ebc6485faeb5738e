"""The web app's Library and People pages (issue 16) in a real browser: headless chromium (selenium,
tests/browser.py) on the real API app served by waitress, signed in through a real one-time link.
Real indexing throughout: a clip with a real face (tests/face_media.py) for the people page, a clip
uploaded from the library page, and a corrupt file that fails. axe-core (0 serious or critical) and
the console (no errors) are checked on each page. Every wait is for a condition."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

from heimdex.dev.samples import Segment, make_clip
from heimdex.embedded.engine import Engine
from tests import face_media
from tests.browser import Browser, served

pytestmark = pytest.mark.slow

PEOPLE_ORG = "web-people"
LIBRARY_ORG = "web-library"
INDEXING_S = 600.0  # the ceiling of an indexing wait on a loaded 2-core machine
NAME = "Ada Lovelace"


@pytest.fixture(scope="module")
def base(engine: Engine) -> Iterator[str]:
    with served(engine) as url:
        yield url


@pytest.fixture(scope="module")
def face_clip(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A clip with one real face (a photograph held for 3 s), then other footage; indexed."""
    folder = tmp_path_factory.mktemp("web-faces")
    photos = face_media.face_photos(folder)
    clip = face_media.compose(
        folder / "portrait.mp4", [("still", str(photos["obama.jpg"]), 3), ("bars", "", 3)]
    )
    (result,) = engine.index([clip], org=PEOPLE_ORG)
    assert result.status == "ready", result
    (person,) = engine.people(org=PEOPLE_ORG)
    return {"path": clip, "person": person}


def clean_page(b: Browser) -> None:
    """The page as it is now: no serious or critical axe-core violation, no console error."""
    assert b.axe_violations() == []
    assert b.console_errors() == []


def row_of(b: Browser, filename: str) -> WebElement | None:
    """The table row of a file (looked up afresh: the page redraws its rows as it polls)."""
    found: WebElement | None = b.js(
        "return [...document.querySelectorAll('table.assets tbody tr')]"
        ".find(r => r.querySelector('th.file').firstChild.textContent === arguments[0]) || null",
        filename,
    )
    return found


def cells_of(b: Browser, filename: str) -> list[str] | None:
    """The texts of a file's row cells, read from one rendering of the row."""
    cells: list[str] | None = b.js(
        "const r = [...document.querySelectorAll('table.assets tbody tr')]"
        ".find(r => r.querySelector('th.file').firstChild.textContent === arguments[0]);"
        " return r ? [...r.querySelectorAll('td')].map(c => c.innerText) : null",
        filename,
    )
    return cells


def click_in_row(b: Browser, filename: str, selector: str) -> None:
    """Click a button of a file's row, found afresh until the click lands on the row shown."""

    def click(_: Any) -> bool:
        row = row_of(b, filename)
        if row is None:
            return False
        row.find_element(By.CSS_SELECTOR, selector).click()
        return True

    b.wait_for(click, what=f"{selector} of {filename}")


def row_status(b: Browser, filename: str) -> str | None:
    status: str | None = b.js(
        "const r = [...document.querySelectorAll('table.assets tbody tr')]"
        ".find(r => r.querySelector('th.file').firstChild.textContent === arguments[0]);"
        " return r ? r.dataset.status : null",
        filename,
    )
    return status


def image_loaded(b: Browser, img: WebElement) -> bool:
    return bool(b.js("return arguments[0].complete && arguments[0].naturalWidth > 0", img))


def test_rename_a_person_on_the_people_page_then_search_by_that_name(
    base: str, engine: Engine, face_clip: dict[str, Any]
) -> None:
    person = face_clip["person"]
    with Browser() as b:
        b.sign_in(base, engine, org=PEOPLE_ORG)
        b.open(f"{base}/people")
        card = b.wait_for(
            lambda d: d.find_element(By.CSS_SELECTOR, f'li.person[data-person="{person["id"]}"]'),
            what="the person's card",
        )
        assert card.find_element(By.CSS_SELECTOR, ".name").text == "unnamed"
        assert "1 face" in card.find_element(By.CSS_SELECTOR, ".counts").text
        cover = card.find_element(By.CSS_SELECTOR, "img.face")
        assert cover.get_attribute("src").startswith(f"{base}/v1/media/{PEOPLE_ORG}/")  # a signed URL
        b.wait_for(lambda d: image_loaded(b, cover), what="the cover face to load")
        clean_page(b)

        # Rename inline, from the keyboard: the button, the name, Enter.
        card.find_element(By.CSS_SELECTOR, "button.rename-button").send_keys(Keys.ENTER)
        field = b.wait_for(
            lambda d: card.find_element(By.CSS_SELECTOR, "form.rename input"), what="the name field"
        )
        b.wait_for(lambda d: d.switch_to.active_element == field, what="the name field to take the focus")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(NAME, Keys.ENTER)
        b.wait_for(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, f'li.person[data-person="{person["id"]}"] .name').text == NAME
            ),
            what="the new name on the card",
        )
        assert engine.person(person["id"], org=PEOPLE_ORG)["name"] == NAME
        clean_page(b)

        # Search by that name (the search page's person filter): the clip's moment with them.
        b.open(f"{base}/")
        box = b.wait_for(
            lambda d: d.find_element(By.CSS_SELECTOR, "input[name=person]"), what="the person filter"
        )
        box.send_keys(NAME, Keys.ENTER)
        hit = b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "ol.results li.hit"), what="results")[0]
        assert hit.find_element(By.CSS_SELECTOR, ".file").text == face_clip["path"].name
        assert NAME in [c.text for c in hit.find_elements(By.CSS_SELECTOR, ".chips .chip")]
        assert "person=Ada+Lovelace" in b.driver.current_url
        clean_page(b)

        # The person's page lists the appearance: its face crop, and a link to the Watch page.
        b.open(f"{base}/people/{person['id']}")
        link = b.wait_for(lambda d: d.find_element(By.CSS_SELECTOR, "a.appearance"), what="the appearance")
        assert b.driver.find_element(By.TAG_NAME, "h1").text == NAME
        href = link.get_attribute("href")
        assert href.startswith(f"{base}/watch/") and "?t=0.0" in href, href
        b.wait_for(lambda d: image_loaded(b, link.find_element(By.CSS_SELECTOR, "img.face")), what="the crop")
        clean_page(b)
        link.click()
        b.wait_for(lambda d: d.find_elements(By.ID, "player"), what="the Watch page")
        assert "/watch/" in b.driver.current_url


def test_upload_from_the_library_watch_it_index_and_find_it(
    base: str, engine: Engine, tmp_path: Path
) -> None:
    clip = tmp_path / "marmalade festival.mp4"
    make_clip([Segment(5.0, caption="MARMALADE KITE FESTIVAL")], clip)
    with Browser() as b:
        b.sign_in(base, engine, org=LIBRARY_ORG)
        b.open(f"{base}/library")
        b.wait_for(lambda d: d.find_element(By.CSS_SELECTOR, "main h1").text == "Library", what="the page")
        # Every state the upload panel shows, recorded in the page as it changes: (phase, value, max).
        b.js(
            "window.seen = []; const panel = document.querySelector('.upload-panel');"
            " new MutationObserver(() => { const p = panel.querySelector('progress');"
            " window.seen.push([panel.dataset.phase, p ? p.value : null, p ? p.max : null]); })"
            ".observe(panel, {childList: true, subtree: true, attributes: true});"
        )
        b.driver.find_element(By.ID, "upload-file").send_keys(str(clip))
        # The upload bar, then the indexing bar, reaches its end; the table row becomes ready.
        b.wait_for(lambda d: d.find_element(By.ID, "upload-progress").get_attribute("max"), what="the bar")
        b.wait_for(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, ".upload-panel").get_attribute("data-phase")
                in ("indexed", "failed")
            ),
            timeout=INDEXING_S,
            what="the upload to be indexed",
        )
        panel = b.driver.find_element(By.CSS_SELECTOR, ".upload-panel")
        assert panel.get_attribute("data-phase") == "indexed", panel.text
        bar = b.driver.find_element(By.ID, "upload-progress")
        assert bar.get_attribute("value") == bar.get_attribute("max")
        phases = [phase for phase, _, _ in b.js("return window.seen")]
        assert phases.index("uploading") < phases.index("indexing") < phases.index("indexed"), phases
        sent = [(value, top) for phase, value, top in b.js("return window.seen") if phase == "uploading"]
        assert sent[-1][0] == sent[-1][1] == clip.stat().st_size, sent  # the upload bar reached its end
        assert "ready to search" in panel.text
        b.wait_for(lambda d: row_status(b, clip.name) == "ready", what="the row to be ready")
        cells = b.wait_for(lambda d: cells_of(b, clip.name), what="the row's cells")
        assert cells[0].startswith("Ready") and cells[1] == "0:05" and int(cells[2]) >= 1 and cells[3], cells
        clean_page(b)

        # Re-index: the row runs again (the page polls it) and comes back ready.
        (found,) = [a for a in engine.assets(org=LIBRARY_ORG) if a["source"].endswith(f"/{clip.name}")]
        asset = engine.asset(found["asset_id"], org=LIBRARY_ORG)
        assert asset is not None
        click_in_row(b, clip.name, "button.reindex")
        b.wait_for(
            lambda d: "Re-indexing" in d.find_element(By.CSS_SELECTOR, "main > .status").text,
            what="the re-index to start",
        )

        def reindexed(_: Any) -> bool:
            now = engine.asset(asset["asset_id"], org=LIBRARY_ORG)
            done = now is not None and now["status"] == "ready" and now["updated_at"] > asset["updated_at"]
            return done and row_status(b, clip.name) == "ready"

        b.wait_for(reindexed, timeout=INDEXING_S, what="the re-index to finish, on the page too")

        b.open(f"{base}/?q=marmalade+kite")
        hit = b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "ol.results li.hit"), what="results")[0]
        assert hit.find_element(By.CSS_SELECTOR, ".file").text == clip.name
        clean_page(b)


def test_a_failed_file_shows_its_reason_and_can_be_deleted(base: str, engine: Engine, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(64 * 1024))  # an MP4 header, then noise
    with Browser() as b:
        b.sign_in(base, engine, org=LIBRARY_ORG)
        b.open(f"{base}/library")
        b.wait_for(lambda d: d.find_element(By.CSS_SELECTOR, "main h1").text == "Library", what="the page")
        b.driver.find_element(By.ID, "upload-file").send_keys(str(broken))
        b.wait_for(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, ".upload-panel").get_attribute("data-phase") == "failed"
            ),
            timeout=INDEXING_S,
            what="the upload to fail",
        )
        panel = b.driver.find_element(By.CSS_SELECTOR, ".upload-panel").text
        b.wait_for(lambda d: row_status(b, broken.name) == "failed", what="the failed row")
        reason = b.wait_for(
            lambda d: row_of(b, broken.name).find_element(By.CSS_SELECTOR, ".reason").text,  # type: ignore[union-attr]
            what="the reason",
        )
        (asset,) = [a for a in engine.assets(org=LIBRARY_ORG) if a["source"].endswith("/broken.mp4")]
        assert asset["status"] == "failed" and reason == asset["error"] and reason in panel, (reason, panel)
        clean_page(b)

        # Delete asks first; dismissed, nothing happens; accepted, the row goes.
        click_in_row(b, broken.name, "button.delete")
        b.wait_for(lambda d: d.switch_to.alert, what="the confirmation").dismiss()
        assert row_status(b, broken.name) == "failed"
        click_in_row(b, broken.name, "button.delete")
        alert = b.wait_for(lambda d: d.switch_to.alert, what="the confirmation")
        assert "original file stays" in alert.text
        alert.accept()
        b.wait_for(lambda d: row_of(b, broken.name) is None, what="the row to go")
        assert not [a for a in engine.assets(org=LIBRARY_ORG) if a["source"].endswith("/broken.mp4")]
        clean_page(b)


def test_merge_then_forget_on_the_people_page(base: str, engine: Engine, tmp_path: Path) -> None:
    org = "web-merge"
    photos = face_media.face_photos(tmp_path)
    clip = face_media.compose(
        tmp_path / "two.mp4",
        [("still", str(photos["obama.jpg"]), 3), ("bars", "", 2), ("still", str(photos["biden.jpg"]), 3)],
    )
    (result,) = engine.index([clip], org=org)
    assert result.status == "ready", result
    keep, other = engine.people(org=org)
    crops = [a["thumbnail"] for p in (keep, other) for a in engine.person(p["id"], org=org)["appearances"]]
    assert len(crops) == 2 and all(Path(c).is_file() for c in crops)
    with Browser() as b:
        b.sign_in(base, engine, org=org)
        b.open(f"{base}/people")
        b.wait_for(lambda d: len(d.find_elements(By.CSS_SELECTOR, "li.person")) == 2, what="two people")
        card = b.driver.find_element(By.CSS_SELECTOR, f'li.person[data-person="{keep["id"]}"]')
        card.find_element(By.CSS_SELECTOR, "button.merge-button").click()
        pick = b.wait_for(
            lambda d: card.find_element(By.CSS_SELECTOR, "form.merge select"), what="the picker"
        )
        assert [o.get_attribute("value") for o in pick.find_elements(By.TAG_NAME, "option")] == [
            str(other["id"])
        ]
        clean_page(b)  # the merge form too
        card.find_element(By.CSS_SELECTOR, "form.merge button[type=submit]").click()
        b.wait_for(lambda d: len(d.find_elements(By.CSS_SELECTOR, "li.person")) == 1, what="one person left")
        merged = b.driver.find_element(By.CSS_SELECTOR, f'li.person[data-person="{keep["id"]}"]')
        assert merged.find_element(By.CSS_SELECTOR, ".counts").text.startswith("2 faces")
        assert [p["id"] for p in engine.people(org=org)] == [keep["id"]]

        merged.find_element(By.CSS_SELECTOR, "button.forget-button").click()
        alert = b.wait_for(lambda d: d.switch_to.alert, what="the confirmation")
        assert "erases their face data" in alert.text
        alert.accept()
        b.wait_for(lambda d: not d.find_elements(By.CSS_SELECTOR, "li.person"), what="nobody left")
        assert "face data is erased" in b.driver.find_element(By.CSS_SELECTOR, "main > .status").text
        assert b.driver.switch_to.active_element.tag_name == "h1"  # the focus is not lost with the card
        assert engine.people(org=org) == [] and not any(Path(c).exists() for c in crops)
        clean_page(b)


def test_a_running_jobs_bar_follows_its_progress_by_polling(
    base: str, engine: Engine, tmp_path: Path
) -> None:
    """The job store's real transitions, made while the page is open: the row's bar follows them
    (the page polls), and a failure replaces it with the reason."""
    from heimdex.core import graph
    from heimdex.domain import AssetRef, make_asset_id

    org = "web-progress"
    source = str(tmp_path / "long interview.mp4")
    ref = AssetRef(org, make_asset_id(org, source, "v1"), source, "v1")
    assert engine.jobs.create(ref)
    engine.jobs.stage_started(ref, graph.FIRST)

    def bar(_: Any) -> tuple[str, str, str] | None:
        found: list[str] | None = b.js(
            "const r = document.querySelector('table.assets tbody tr[data-status=processing]');"
            " const p = r && r.querySelector('progress.job');"
            " return p && [p.value, p.max, r.querySelector('.steps').textContent]",
        )
        return (str(int(found[0])), str(int(found[1])), found[2]) if found else None

    with Browser() as b:
        b.sign_in(base, engine, org=org)
        b.open(f"{base}/library")
        first = b.wait_for(bar, what="the row's progress bar")
        assert first[:2] == ("0", str(len(graph.PIPELINE))) and graph.FIRST in first[2], first
        clean_page(b)
        engine.jobs.stage_finished(ref, graph.FIRST, status="done", seconds=0.1, parts=2)
        engine.jobs.stage_started(ref, "asr_0")
        total = 2 * sum(1 for s in graph.PIPELINE if s.segmented) + sum(
            1 for s in graph.PIPELINE if not s.segmented
        )
        moved = b.wait_for(lambda d: (now := bar(d)) and now[0] == "1" and now, what="the bar to move")
        assert moved[1] == str(total) and f"1 of {total} steps" in moved[2] and "asr_0" in moved[2], moved
        engine.jobs.job_failed(ref, "asr_0", "the audio track cannot be decoded")
        b.wait_for(lambda d: row_status(b, "long interview.mp4") == "failed", what="the failure")
        reason = b.driver.find_element(By.CSS_SELECTOR, "tr[data-status=failed] .reason").text
        assert reason == "asr_0: the audio track cannot be decoded"
        assert b.driver.find_elements(By.CSS_SELECTOR, "progress.job") == []
        clean_page(b)
