"""The web app (issue 16) in a real browser: headless chromium (selenium) on the real API app served
by waitress, signed in through a real one-time link, over the session corpus (tests/conftest.py).
Search and watch, keyboard use, another organisation's URLs typed by hand, the sign-in link, CSRF,
the Content-Security-Policy; axe-core (0 serious or critical) and the console (no errors) on every
page visited."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from heimdex.api.web import STATIC, new_signin_link
from heimdex.embedded.engine import Engine
from tests.browser import Browser, served
from tests.conftest import JWT_SECRET

pytestmark = pytest.mark.slow

SENTENCE = "volunteers planted young oak trees"  # spoken in tests/conftest.py SPEECH_CLIP


@pytest.fixture(scope="module")
def base(engine: Engine, corpus: dict[str, Any]) -> Iterator[str]:
    with served(engine) as url:
        yield url


@pytest.fixture(scope="module")
def browser(base: str, engine: Engine) -> Iterator[Browser]:
    with Browser() as b:
        b.sign_in(base, engine)
        yield b


def clean_page(b: Browser) -> None:
    """The page as it is now: no serious or critical axe-core violation, no console error."""
    assert b.axe_violations() == []
    assert b.console_errors() == []


def hits(b: Browser) -> list[WebElement]:
    return b.driver.find_elements(By.CSS_SELECTOR, "ol.results li.hit")


def current_line(b: Browser) -> dict[str, Any] | None:
    found: dict[str, Any] | None = b.js(
        "const l = document.querySelector('button.line[aria-current=\"true\"]');"
        " return l && {start: Number(l.dataset.start), text: l.textContent}"
    )
    return found


def current_time(b: Browser) -> float:
    return float(b.js("return document.getElementById('player').currentTime"))


def test_search_a_spoken_sentence_then_watch_it_at_that_moment(base: str, browser: Browser) -> None:
    b = browser
    b.open(f"{base}/?q={quote(SENTENCE)}")
    b.wait_for(lambda d: hits(b), what="search results")
    first = hits(b)[0]
    snippet = first.find_element(By.CSS_SELECTOR, ".snippet")
    marks = {m.text.lower() for m in snippet.find_elements(By.TAG_NAME, "mark")}
    assert {"volunteers", "planted", "oak"} <= marks, snippet.get_attribute("outerHTML")
    assert (
        first.find_element(By.CSS_SELECTOR, "img.thumb").get_attribute("src").startswith(f"{base}/v1/media/")
    )
    b.wait_for(
        lambda d: b.js("return document.querySelector('img.thumb').naturalWidth") > 0, what="thumbnail"
    )
    clean_page(b)

    href = first.find_element(By.CSS_SELECTOR, "a.hit-link").get_attribute("href")
    start = float(re.search(r"[?&]t=([\d.]+)", href).group(1))  # type: ignore[union-attr]
    first.find_element(By.CSS_SELECTOR, "a.hit-link").click()
    b.wait_for(lambda d: "/watch/" in d.current_url, what="the watch page")
    b.wait_for(lambda d: b.js("const v = document.getElementById('player'); return v && v.readyState >= 1"))
    # the player opens at the moment (no autoplay: it stays there)
    b.wait_for(lambda d: abs(current_time(b) - start) <= 1.0, what=f"the player at {start}")
    line = b.wait_for(lambda d: current_line(b), what="a marked transcript line")
    assert "oak trees" in line["text"], line  # the line spoken at the hit's moment
    clean_page(b)

    # another line: clicking it seeks there (and plays) and marks it. The test holds the player where
    # each seek lands (paused on "seeked"), so a slow machine cannot play past what is checked.
    b.js(
        "const v = document.getElementById('player'); window.seekedAt = [];"
        " v.addEventListener('seeked', () => { window.seekedAt.push(v.currentTime); v.pause(); });"
    )
    lines = b.driver.find_elements(By.CSS_SELECTOR, "button.line")
    other = next(el for el in lines if "lamp" in el.text.lower())  # ASR: "light house keeper"
    other_start = float(other.get_attribute("data-start"))
    other.click()
    b.wait_for(
        lambda d: any(abs(t - other_start) <= 1.0 for t in b.js("return window.seekedAt")), what="seek"
    )
    b.wait_for(
        lambda d: "lamp" in (current_line(b) or {}).get("text", "").lower(), what="the clicked line marked"
    )
    # a scene in the strip seeks too
    scenes = b.driver.find_elements(By.CSS_SELECTOR, "button.scene")
    assert len(scenes) >= 2
    last = float(scenes[-1].get_attribute("data-start"))
    scenes[-1].click()
    b.wait_for(lambda d: any(abs(t - last) <= 1.0 for t in b.js("return window.seekedAt")), what="scene seek")
    b.wait_for(
        lambda d: (
            b.js("return document.querySelector('button.scene[aria-current=true]')?.dataset.start")
            == scenes[-1].get_attribute("data-start")
        ),
        what="the clicked scene marked",
    )
    assert (
        b.driver.find_element(By.CSS_SELECTOR, "video track[kind=captions]")
        .get_attribute("src")
        .endswith("/captions.vtt")
    )
    b.wait_for(lambda d: b.js("return document.querySelector('video').textTracks[0].cues?.length || 0") > 0)
    # "Copy link to this moment": copied, or (no clipboard access headless) the link shown to copy
    b.driver.find_element(By.XPATH, "//button[text()='Copy link to this moment']").click()
    copied = b.wait_for(lambda d: d.find_element(By.CSS_SELECTOR, ".copied").text, what="the copy outcome")
    assert copied == "Link copied" or re.search(r"/watch/[0-9a-f]+\?t=\d+\.\d$", copied), copied
    clean_page(b)


def test_keyboard_only_search_and_open(base: str, browser: Browser) -> None:
    b = browser
    b.open(f"{base}/watch/{'0' * 8}")  # anywhere but the search page first: a 404 page is fine
    b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, ".message.error"), what="the not-found message")
    b.forget_console()  # the 404 of that asset was asked for on purpose
    b.open(f"{base}/")
    box = b.wait_for(lambda d: d.find_element(By.ID, "q"))
    b.js("document.activeElement.blur()")  # focus nowhere: then / focuses the box
    ActionChains(b.driver).send_keys("/").perform()
    b.wait_for(lambda d: d.switch_to.active_element == box, what="/ to focus the box")
    box.send_keys("lighthouse keeper repaired the lamp", Keys.ENTER)
    b.wait_for(lambda d: hits(b), what="results")
    assert "q=lighthouse" in b.driver.current_url  # the URL holds the query
    ActionChains(b.driver).send_keys(Keys.ARROW_DOWN).perform()
    first_link = hits(b)[0].find_element(By.CSS_SELECTOR, "a.hit-link")
    b.wait_for(lambda d: d.switch_to.active_element == first_link, what="arrow down to the first result")
    ActionChains(b.driver).send_keys(Keys.ENTER).perform()
    b.wait_for(lambda d: "/watch/" in d.current_url and current_line(b), what="Enter to open the result")
    assert "lamp" in current_line(b)["text"].lower()  # type: ignore[index]
    b.driver.back()
    b.wait_for(lambda d: hits(b), what="results again after Back")
    assert b.driver.find_element(By.ID, "q").get_attribute("value") == "lighthouse keeper repaired the lamp"
    clean_page(b)


def test_filters_narrow_the_search_and_live_in_the_url(
    base: str, browser: Browser, corpus: dict[str, Any]
) -> None:
    b = browser
    b.open(f"{base}/?q={quote('chess tournament results')}")
    b.wait_for(lambda d: hits(b), what="results")
    folder = str(corpus["caption"])[:-4]  # a prefix of the caption clip's path only
    form = b.driver.find_element(By.CSS_SELECTOR, "form.search")
    form.find_element(By.NAME, "source").send_keys(folder)
    Select(form.find_element(By.NAME, "kind")).select_by_value("text")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    b.wait_for(lambda d: "kind=text" in d.current_url and hits(b), what="filtered results")
    assert f"source={quote(folder, safe='')}" in b.driver.current_url
    files = {h.find_element(By.CSS_SELECTOR, ".file").text for h in hits(b)}
    assert files == {"caption.mp4"}, files
    # the shared URL opens the same search, filters filled in
    b.open(b.driver.current_url)
    b.wait_for(lambda d: hits(b), what="results of the shared URL")
    assert b.driver.find_element(By.NAME, "source").get_attribute("value") == folder
    assert (
        Select(b.driver.find_element(By.NAME, "kind")).first_selected_option.get_attribute("value") == "text"
    )
    assert {h.find_element(By.CSS_SELECTOR, ".file").text for h in hits(b)} == {"caption.mp4"}
    clean_page(b)


def test_another_organisation_sees_nothing_of_this_one(base: str, engine: Engine) -> None:
    default_hit = requests.get(
        f"{base}/v1/search", params={"q": SENTENCE}, cookies=_session(base, engine, "default"), timeout=60
    ).json()["results"][0]
    with Browser() as b:
        b.open(f"{base}/library")  # not signed in: the sign-in page, whatever the address
        b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "section.signin"), what="the sign-in page")
        clean_page(b)
        b.sign_in(base, engine, org="other")
        b.open(f"{base}/?q={quote(SENTENCE)}")
        b.wait_for(
            lambda d: "Nothing found" in d.find_element(By.CSS_SELECTOR, ".status").text, what="no hits"
        )
        assert hits(b) == []
        b.open(f"{base}/watch/{default_hit['asset_id']}?t=3")
        b.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, ".message.error"), what="the refusal")
        assert "no such asset" in b.driver.find_element(By.CSS_SELECTOR, ".message.error").text
        assert b.driver.find_elements(By.TAG_NAME, "video") == []
        # default's signed URLs with the organisation changed by hand: refused, nothing drawn
        for url in (default_hit["thumbnail_url"], default_hit["media_url"]):
            forged = url.replace("/v1/media/default/", "/v1/media/other/")
            status = b.driver.execute_async_script(
                "fetch(arguments[0]).then(r => arguments[1](r.status))", forged
            )
            assert status == 403, (forged, status)
        b.js(
            "const i = document.createElement('img'); i.id = 'forged'; i.alt = ''; i.src = arguments[0];"
            " document.body.append(i);",
            default_hit["thumbnail_url"].replace("/v1/media/default/", "/v1/media/other/"),
        )
        b.wait_for(lambda d: b.js("return document.getElementById('forged').complete"))
        assert b.js("return document.getElementById('forged').naturalWidth") == 0


def _session(base: str, engine: Engine, org: str) -> requests.cookies.RequestsCookieJar:
    resp = requests.get(new_signin_link(engine.db, org, base, 600), allow_redirects=False, timeout=60)
    assert resp.status_code == 303 and resp.headers["Location"] == "/"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # http here
    return resp.cookies


def test_a_signin_link_works_once_and_not_after_it_expires(base: str, engine: Engine) -> None:
    link = new_signin_link(engine.db, "default", base, 600)
    first = requests.get(link, allow_redirects=False, timeout=60)
    assert first.status_code == 303 and "heimdex_session" in first.cookies
    again = requests.get(link, allow_redirects=False, timeout=60)
    assert (
        again.status_code == 410 and "already used" in again.text and "heimdex_session" not in again.cookies
    )
    stale = new_signin_link(engine.db, "default", base, 600)
    with engine.db.org_tx("default") as conn:
        conn.execute("UPDATE signin_links SET expires_at = now() - interval '1 second' WHERE used_at IS NULL")
    expired = requests.get(stale, allow_redirects=False, timeout=60)
    assert expired.status_code == 410 and "expired" in expired.text
    # the link names its organisation: changed by hand, it signs no one in anywhere
    forged = new_signin_link(engine.db, "default", base, 600).replace("token=default.", "token=other.")
    assert requests.get(forged, allow_redirects=False, timeout=60).status_code == 410
    assert requests.get(f"{base}/signin?token=nonsense", timeout=60).status_code == 400


def test_the_cli_prints_a_link_the_server_redeems(
    base: str, cli_env: dict[str, str], heimdex_cmd: list[str]
) -> None:
    """`heimdex token --login` runs in a process of its own: the link it stores is the server's to redeem."""
    made = subprocess.run(
        [*heimdex_cmd, "token", "--login", "--org", "default", "--url", base],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    link = made.stdout.strip()
    assert link.startswith(f"{base}/signin?token=default."), made
    resp = requests.get(link, allow_redirects=False, timeout=60)
    assert resp.status_code == 303 and "heimdex_session" in resp.cookies
    assert requests.get(link, allow_redirects=False, timeout=60).status_code == 410


def test_serve_prints_its_address_and_a_working_signin_link(
    base: str, engine: Engine, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`heimdex serve` (its start-up; waitress itself not started) prints a link that signs in once."""
    import waitress

    from heimdex import cli

    for name in [k for k in os.environ if k.startswith("HEIMDEX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HEIMDEX_HOME", str(home))
    monkeypatch.setenv("HEIMDEX_DATABASE_URL", engine.db.url)
    monkeypatch.setenv("HEIMDEX_JWT_SECRET", JWT_SECRET)
    monkeypatch.setattr(waitress, "serve", lambda *a, **k: None)
    args = cli.build_parser().parse_args(["serve", "--port", "8123"])
    assert args.func(args) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert "web app: http://127.0.0.1:8123/" in err
    link = re.search(r"http://127\.0\.0\.1:8123/signin\?token=\S+", err)
    assert link, err
    here = link.group(0).replace("http://127.0.0.1:8123", base)  # the same database behind `base`
    assert requests.get(here, allow_redirects=False, timeout=60).status_code == 303
    assert requests.get(here, allow_redirects=False, timeout=60).status_code == 410


def test_changes_made_with_a_session_need_the_csrf_token(base: str, engine: Engine) -> None:
    cookies = _session(base, engine, "default")
    who = requests.get(f"{base}/v1/session", cookies=cookies, timeout=60).json()
    assert who["org_id"] == "default" and who["via"] == "cookie" and who["csrf_token"]
    name = {"name": "Nobody"}
    refused = requests.patch(f"{base}/v1/people/999999", json=name, cookies=cookies, timeout=60)
    assert refused.status_code == 403 and refused.json()["code"] == "csrf"
    wrong = {"X-CSRF-Token": who["csrf_token"][:-2] + "xx"}
    assert (
        requests.patch(f"{base}/v1/people/999999", json=name, cookies=cookies, headers=wrong).status_code
        == 403
    )
    right = {"X-CSRF-Token": who["csrf_token"]}
    passed = requests.patch(f"{base}/v1/people/999999", json=name, cookies=cookies, headers=right, timeout=60)
    assert passed.status_code == 404  # past authentication: there is no such person
    assert requests.delete(f"{base}/v1/session", cookies=cookies, timeout=60).status_code == 403
    out = requests.delete(f"{base}/v1/session", cookies=cookies, headers=right, timeout=60)
    assert out.status_code == 200 and out.headers["Set-Cookie"].startswith("heimdex_session=;")
    # without a cookie or token: 401; a forged cookie: 401
    assert requests.get(f"{base}/v1/assets", timeout=60).status_code == 401
    bad = requests.get(f"{base}/v1/assets", cookies={"heimdex_session": "x.y.z"}, timeout=60)
    assert bad.status_code == 401
    # bearer tokens work as before, and need no CSRF token
    from tests.test_api_surface import auth

    assert requests.get(f"{base}/v1/assets", headers=auth(), timeout=60).status_code == 200


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag == "script" and "src" not in names:
            self.inline.append(tag)
        self.handlers += [k for k in names if k.startswith("on") or k == "style"]


def test_pages_carry_a_strict_csp_and_no_inline_script(base: str) -> None:
    for path in ("/", "/watch/abc123", "/library", "/people", "/people/4", "/signin?token=x"):
        resp = requests.get(base + path, timeout=60)
        assert resp.headers["Content-Type"].startswith("text/html"), path
        csp = dict(d.strip().split(" ", 1) for d in resp.headers["Content-Security-Policy"].split(";"))
        assert (
            csp["default-src"] == "'self'" and csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
        )
        assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
        assert csp["frame-ancestors"] == "'none'" and csp["form-action"] == "'self'"
        assert resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["Referrer-Policy"]
        parser = _Scripts()
        parser.feed(resp.text)
        assert parser.inline == [] and parser.handlers == [], path
    # the scripts never hand server text to the HTML parser
    for js in (STATIC / "js").glob("*.js"):
        assert not re.search(
            r"\.(inner|outer)HTML\s*=|insertAdjacentHTML\(|document\.write|\beval\(|new Function\(",
            js.read_text(),
        ), js
    static = requests.get(f"{base}/static/js/app.js", timeout=60)
    assert static.status_code == 200 and "max-age" in static.headers["Cache-Control"]
    assert static.headers["Content-Type"].startswith("text/javascript")
    for escape in ("%2e%2e/api/app.py", "..%2fapi%2fapp.py"):  # only the static folder is served
        assert requests.get(f"{base}/static/{escape}", timeout=60).status_code == 404
