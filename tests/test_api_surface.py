"""The product API (issue 14) over the indexed corpus, through a real HTTP server (waitress, as
`heimdex serve`) and a real client (requests): generated OpenAPI, assets, signed media with Range,
captions, edit lists (read back by pycmx), search filters and pages, delete and re-index."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pycmx
import pytest
import requests
import waitress

from heimdex.api.app import create_app, generated_document, openapi_document
from heimdex.api.auth import issue_token
from heimdex.api.context import ApiContext
from heimdex.api.signing import MediaSigner
from heimdex.config import Settings
from heimdex.dev.samples import Segment, make_clip
from heimdex.embedded.engine import DELETED_NOTE, Engine
from heimdex.media import captions
from tests.conftest import JWT_SECRET
from tests.waiting import wait_for


def auth(org: str = "default") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(JWT_SECRET, org)}"}


@pytest.fixture(scope="module")
def base(engine: Engine, corpus: dict[str, Any]) -> Iterator[str]:
    server = waitress.create_server(create_app(engine), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


def get(base: str, path: str, org: str | None = "default", **kw: Any) -> requests.Response:
    headers = {**(auth(org) if org else {}), **kw.pop("headers", {})}
    return requests.get(base + path, headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def speech_asset(base: str, corpus: dict[str, Any]) -> dict[str, Any]:
    assets = get(base, "/v1/assets").json()["assets"]
    return next(a for a in assets if a["source"] == str(corpus["speech"]))


# -- 1. typed API, generated document ----------------------------------------------------------------


def test_the_document_is_generated_served_and_the_repo_copy_matches(base: str) -> None:
    served = get(base, "/openapi.json", org=None).json()
    assert served["openapi"] == "3.1.0"
    assert served == generated_document() == openapi_document()  # repo copy: `python -m heimdex.api.app`
    ops = {(p, m) for p, item in served["paths"].items() for m in item}
    assert {
        ("/v1/search", "get"),
        ("/v1/search/export", "get"),
        ("/v1/assets", "get"),
        ("/v1/assets/{asset_id}", "get"),
        ("/v1/assets/{asset_id}", "delete"),
        ("/v1/assets/{asset_id}/scenes", "get"),
        ("/v1/assets/{asset_id}/sidecar", "get"),
        ("/v1/assets/{asset_id}/captions.vtt", "get"),
        ("/v1/assets/{asset_id}/captions.srt", "get"),
        ("/v1/assets/{asset_id}/reindex", "post"),
        ("/v1/media/{org_id}/{asset_id}/video", "get"),
        ("/v1/media/{org_id}/{asset_id}/thumbnails/{index}.jpg", "get"),
    } <= ops
    hit = served["components"]["schemas"]["Hit"]["properties"]
    assert {"thumbnail_url", "media_url", "link"} <= set(hit)
    assert served["paths"]["/v1/assets"]["get"]["responses"]["404"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/Error"}
    ui = get(base, "/docs", org=None)
    assert ui.status_code == 200 and "swagger-ui" in ui.text
    assert get(base, "/docs/swagger/js/swagger-ui-bundle.js", org=None).status_code == 200


def test_validation_errors_keep_the_one_error_shape(base: str) -> None:
    for path, code in [
        ("/v1/assets?limit=0", "invalid_parameter"),
        ("/v1/assets?status=gone", "invalid_parameter"),
        ("/v1/assets?cursor=not-a-cursor", "invalid_parameter"),
        ("/v1/assets/NOT-AN-ID", "invalid_parameter"),
        ("/v1/search?q=x&kind=smell", "invalid_parameter"),
        ("/v1/search?q=x&after=yesterday", "invalid_parameter"),
        ("/v1/search?q=x&cursor=eyJvIjoxMH0", "invalid_parameter"),
        ("/v1/search/export?q=x&format=xml", "invalid_parameter"),
    ]:
        resp = get(base, path)
        assert resp.status_code == 400, (path, resp.text)
        body = resp.json()
        assert set(body) == {"error", "code"} and body["code"] == code, (path, body)


# -- 2. assets ---------------------------------------------------------------------------------------


def test_assets_are_listed_in_pages_with_filters(base: str, corpus: dict[str, Any]) -> None:
    everything = get(base, "/v1/assets").json()
    assert "next_cursor" not in everything  # one page holds them all
    sources: list[str] = []
    cursor = None
    while True:
        page = get(base, "/v1/assets", params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["assets"]) <= 1
        sources += [a["source"] for a in page["assets"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert sources == [a["source"] for a in everything["assets"]] and len(sources) >= 2
    prefix = str(corpus["speech"])[:-4]
    only = get(base, "/v1/assets", params={"source": prefix}).json()["assets"]
    assert [a["source"] for a in only] == [str(corpus["speech"])]
    assert all(
        a["status"] == "ready" for a in get(base, "/v1/assets", params={"status": "ready"}).json()["assets"]
    )
    assert get(base, "/v1/assets", params={"status": "failed", "source": prefix}).json()["assets"] == []
    # a cursor is bound to its filters
    first = get(base, "/v1/assets", params={"limit": 1}).json()["next_cursor"]
    resp = get(base, "/v1/assets", params={"limit": 1, "status": "ready", "cursor": first})
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_parameter"


def test_one_asset_in_full(base: str, speech_asset: dict[str, Any], corpus: dict[str, Any]) -> None:
    a = get(base, f"/v1/assets/{speech_asset['asset_id']}").json()
    assert a["source"] == str(corpus["speech"]) and a["status"] == "ready"
    media = a["media"]
    assert media["duration"] == pytest.approx(52.0, abs=0.5)
    assert media["video"]["width"] > 0 and media["video"]["height"] > 0 and media["video"]["fps"] > 0
    assert media["video"]["codec"] and media["audio"]["codec"]
    assert set(a["stages"]) == {"probe", "asr", "shots", "ocr", "vision", "faces", "index"}
    assert all(s["status"] in ("done", "skipped") for s in a["stages"].values()), a["stages"]
    probe = a["stages"]["probe"]
    assert (
        probe["status"] == "done" and probe["seconds"] >= 0 and probe["started_at"] and probe["finished_at"]
    )
    assert a["scenes"] >= 3 and a["indexed_at"] and a["models"]["text"]
    assert a["job_id"] == f"job-{a['asset_id']}"


def test_another_orgs_asset_answers_like_a_missing_one(base: str, speech_asset: dict[str, Any]) -> None:
    real, missing = speech_asset["asset_id"], "0" * 24
    for method, suffix in [
        ("GET", ""),
        ("GET", "/scenes"),
        ("GET", "/sidecar"),
        ("GET", "/captions.vtt"),
        ("GET", "/captions.srt"),
        ("DELETE", ""),
        ("POST", "/reindex"),
    ]:
        answers = []
        for asset in (real, missing):
            resp = requests.request(
                method, f"{base}/v1/assets/{asset}{suffix}", headers=auth("intruder"), timeout=60
            )
            answers.append((resp.status_code, resp.json()))
        assert answers[0] == answers[1] and answers[0][0] == 404, (method, suffix, answers)
    assert get(base, f"/v1/assets/{real}").status_code == 200  # and the owner still has it


def test_scenes_and_sidecar(base: str, speech_asset: dict[str, Any]) -> None:
    body = get(base, f"/v1/assets/{speech_asset['asset_id']}/scenes").json()
    scenes = body["scenes"]
    assert len(scenes) == speech_asset["scenes"]
    assert [s["index"] for s in scenes] == list(range(len(scenes)))
    assert all(s["start"] < s["end"] for s in scenes)
    assert any("lamp during the storm" in s["transcript"].lower() for s in scenes)
    assert any("RAILWAY" in s["ocr_text"].upper() for s in scenes)
    assert all(s["link"].endswith(f"#t={s['start']:.1f}") for s in scenes)
    doc = get(base, f"/v1/assets/{speech_asset['asset_id']}/sidecar").json()
    assert doc["schema_version"] == 1 and doc["asset"]["asset_id"] == speech_asset["asset_id"]


# -- 3. media a browser can open ---------------------------------------------------------------------


def test_hits_and_scenes_open_without_credentials(base: str, speech_asset: dict[str, Any]) -> None:
    hits = get(base, "/v1/search", params={"q": "lighthouse keeper lamp", "k": 3}).json()["results"]
    assert hits and all(h["thumbnail_url"] and h["media_url"] for h in hits)
    top = hits[0]
    assert top["link"] == f"{top['media_url']}#t={top['start']:.1f}"
    thumb = requests.get(top["thumbnail_url"], timeout=60)  # no Authorization header
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff"
    video = requests.get(top["media_url"], headers={"Range": "bytes=0-99"}, timeout=60)
    assert (
        video.status_code == 206
        and len(video.content) == 100
        and video.headers["Content-Type"] == "video/mp4"
    )
    scene = get(base, f"/v1/assets/{speech_asset['asset_id']}/scenes").json()["scenes"][0]
    assert requests.get(scene["thumbnail_url"], timeout=60).status_code == 200


def test_public_url_leads_every_signed_url() -> None:
    """HEIMDEX_PUBLIC_URL, when set, is where media and thumbnail URLs point, whatever host the
    request came in on."""
    settings = Settings(public_url="https://search.example.com/")
    ctx = ApiContext(
        engine=type("E", (), {"settings": settings})(),
        signer=MediaSigner(b"k" * 32, 60),
        reindex=lambda ref: ref,
    )
    with request_context():
        assert ctx.media_url("default", "a1").startswith(
            "https://search.example.com/v1/media/default/a1/video?"
        )
        assert ctx.link(ctx.media_url("default", "a1"), 14.0).endswith("#t=14.0")
    # Unset: the request's host, with the scheme of the TLS-terminating proxy in front of the app
    # (Cloud Functions, Cloud Run): a page on https cannot load http media.
    ctx.engine.settings = Settings()
    with request_context({"X-Forwarded-Proto": "https"}):
        assert ctx.base() == "https://10.0.0.7:8080"
    with request_context({"X-Forwarded-Proto": "gopher"}):
        assert ctx.base() == "http://10.0.0.7:8080"
    with request_context():
        thumb = ctx.thumbnail_url("default", "a1", 3, "t.jpg") or ""
        assert thumb.startswith("http://10.0.0.7:8080/v1/media/default/a1/thumbnails/3.jpg?exp="), thumb


def request_context(headers: dict[str, str] | None = None) -> Any:
    import flask

    return flask.Flask(__name__).test_request_context(
        "/v1/search", base_url="http://10.0.0.7:8080", headers=headers or {}
    )


def test_range_requests_follow_rfc_9110(
    base: str, speech_asset: dict[str, Any], corpus: dict[str, Any]
) -> None:
    url = get(base, f"/v1/assets/{speech_asset['asset_id']}").json()["media_url"]
    data = Path(corpus["speech"]).read_bytes()
    size = len(data)

    def fetch(range_header: str | None, method: str = "GET") -> requests.Response:
        headers = {"Range": range_header} if range_header is not None else {}
        return requests.request(method, url, headers=headers, timeout=60)

    whole = fetch(None)
    assert whole.status_code == 200 and whole.content == data and whole.headers["Accept-Ranges"] == "bytes"
    part = fetch("bytes=100-199")
    assert part.status_code == 206 and part.content == data[100:200]
    assert (
        part.headers["Content-Range"] == f"bytes 100-199/{size}" and part.headers["Accept-Ranges"] == "bytes"
    )
    assert fetch(f"bytes={size - 10}-").content == data[-10:]
    assert fetch("bytes=-5").content == data[-5:]
    clipped = fetch(f"bytes={size - 3}-{size + 1000}")
    assert (
        clipped.status_code == 206
        and clipped.headers["Content-Range"] == f"bytes {size - 3}-{size - 1}/{size}"
    )
    for unsatisfiable in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
        resp = fetch(unsatisfiable)
        assert resp.status_code == 416, unsatisfiable
        assert (
            resp.headers["Content-Range"] == f"bytes */{size}"
            and resp.json()["code"] == "range_not_satisfiable"
        )
    # malformed, reversed (invalid, 14.1.1), another unit (MUST ignore) or several ranges: the whole file
    for ignored in ("bytes=abc", "bytes=200-100", "items=0-5", "bytes=0-1,5-6", "bytes 0-5", "bytes=--1"):
        resp = fetch(ignored)
        assert resp.status_code == 200 and resp.content == data, ignored
    etag = whole.headers["ETag"]
    assert requests.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}, timeout=60).status_code == 206
    assert (
        requests.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old"'}, timeout=60).status_code == 200
    )
    head = fetch("bytes=0-9", method="HEAD")
    assert head.status_code == 206 and head.headers["Content-Length"] == "10" and head.content == b""


def test_signed_urls_refuse_any_alteration_or_expiry(
    base: str, speech_asset: dict[str, Any], engine: Engine
) -> None:
    url = get(base, f"/v1/assets/{speech_asset['asset_id']}").json()["media_url"]
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    asset = speech_asset["asset_id"]
    other_asset = ("1" if asset[0] != "1" else "2") + asset[1:]
    flipped = q["sig"][:-1] + ("A" if q["sig"][-1] != "A" else "B")
    root = f"{base}/v1/media"
    assert requests.get(url, timeout=60).status_code == 200
    altered = [
        f"{root}/intruder/{asset}/video?exp={q['exp']}&sig={q['sig']}",
        f"{root}/default/{other_asset}/video?exp={q['exp']}&sig={q['sig']}",
        f"{root}/default/{asset}/thumbnails/0.jpg?exp={q['exp']}&sig={q['sig']}",
        f"{root}/default/{asset}/video?exp={int(q['exp']) + 1}&sig={q['sig']}",
        f"{root}/default/{asset}/video?exp={q['exp']}&sig={flipped}",
    ]
    for bad in altered:
        resp = requests.get(bad, timeout=60)
        assert resp.status_code == 403 and resp.json()["code"] == "forbidden", bad
    assert requests.get(f"{root}/default/{asset}/video?exp={q['exp']}", timeout=60).status_code == 400
    # Signed with the server's key but already expired.
    signer = MediaSigner(_server_key(engine), engine.settings.media_url_ttl_s)
    expired = signer.path("default", asset, "video", now=time.time() - engine.settings.media_url_ttl_s - 5)
    assert requests.get(base + expired, timeout=60).status_code == 403
    fresh = signer.path("default", asset, "video")
    assert requests.get(base + fresh, headers={"Range": "bytes=0-0"}, timeout=60).status_code == 206


def _server_key(engine: Engine) -> bytes:
    from heimdex.api.auth import jwt_secret
    from heimdex.api.signing import media_key

    return media_key(engine.settings, jwt_secret(engine.settings))


# -- 4. captions and edit lists ----------------------------------------------------------------------


def _vtt_cues(text: str) -> list[tuple[float, float, list[str]]]:
    def secs(stamp: str) -> float:
        h, m, s = stamp.replace(",", ".").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    out = []
    for block in text.strip().split("\n\n")[1:]:
        lines = block.split("\n")
        if lines[0].isdigit():  # SRT numbering
            lines = lines[1:]
        start, _, end = lines[0].partition(" --> ")
        out.append((secs(start), secs(end), lines[1:]))
    return out


def test_captions_vtt_and_srt(base: str, speech_asset: dict[str, Any]) -> None:
    vtt = get(base, f"/v1/assets/{speech_asset['asset_id']}/captions.vtt")
    assert vtt.status_code == 200 and vtt.headers["Content-Type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\nLanguage: en\n\n")
    cues = _vtt_cues(vtt.text)
    assert cues and "dinosaur" in " ".join(" ".join(c[2]) for c in cues).lower()
    for start, end, lines in cues:
        assert 1 <= len(lines) <= 2 and all(len(x) <= 42 for x in lines)
        assert end - start <= 7.0 + 1e-6 and end > start
    srt = get(base, f"/v1/assets/{speech_asset['asset_id']}/captions.srt")
    assert srt.status_code == 200 and srt.text.startswith("1\n00:")
    assert [(a, b) for a, b, _ in _vtt_cues("HEAD\n\n" + srt.text)] == [(a, b) for a, b, _ in cues]


def test_caption_cues_split_at_pauses_and_limits() -> None:
    words = [{"s": i * 0.3, "e": i * 0.3 + 0.25, "w": "word"} for i in range(60)]  # 18 s, no pause
    words += [{"s": 30.0, "e": 30.4, "w": "after"}, {"s": 30.5, "e": 30.9, "w": "pause"}]
    cues = captions.cues(words)
    assert all(len(c.lines) <= 2 and all(len(x) <= 42 for x in c.lines) for c in cues)
    assert all(c.end - c.start <= 7.0 for c in cues) and all(c.end - c.start >= 1.0 for c in cues)
    assert cues[-1].lines == ("after pause",) and cues[-1].start == 30.0
    assert captions.webvtt(cues, language="fr").startswith("WEBVTT\nLanguage: fr\n\n")
    assert "Language" not in captions.webvtt(cues)
    assert captions.webvtt([captions.Cue(0, 1, ("a <b> & c",))]).endswith("a &lt;b&gt; &amp; c\n\n")


def test_an_edl_of_three_hits_reads_back_as_their_source_ranges(base: str) -> None:
    params = {"q": "lighthouse dinosaur oak trees chess", "k": 3}
    hits = get(base, "/v1/search", params=params).json()["results"]
    assert len(hits) == 3
    resp = get(base, "/v1/search/export", params={**params, "format": "edl"})
    assert resp.status_code == 200 and "attachment" in resp.headers["Content-Disposition"]
    edl = pycmx.parse_cmx3600(io.StringIO(resp.text))
    events = list(edl.events)
    assert len(events) == 3
    for hit, event in zip(hits, events, strict=True):
        (edit,) = event.edits
        asset = get(base, f"/v1/assets/{hit['asset_id']}").json()
        fps = asset["media"]["video"]["fps"]
        base_rate = round(fps)

        def frames(tc: str, rate: int = base_rate) -> int:
            h, m, s, f = (int(x) for x in tc.split(":"))
            return ((h * 60 + m) * 60 + s) * rate + f

        assert frames(edit.source_in) == round(hit["start"] * fps)
        assert frames(edit.source_out) == round(hit["end"] * fps)
        assert edit.clip_name == Path(hit["source"]).name
    csv_resp = get(base, "/v1/search/export", params={**params, "format": "csv"})
    rows = csv_resp.text.strip().splitlines()
    assert csv_resp.headers["Content-Type"].startswith("text/csv") and len(rows) == 4
    assert rows[0].startswith("rank,score,clip,source,asset_id,start,end")


# -- 6. search filters and pages ---------------------------------------------------------------------


def test_search_filters_and_cursor_pages(
    base: str, corpus: dict[str, Any], speech_asset: dict[str, Any]
) -> None:
    q = "lighthouse chess museum railway oak"
    one = get(base, "/v1/search", params={"q": q, "asset": speech_asset["asset_id"], "k": 20}).json()[
        "results"
    ]
    assert one and all(h["asset_id"] == speech_asset["asset_id"] for h in one)
    text = get(base, "/v1/search", params={"q": q, "kind": "text", "k": 20}).json()["results"]
    assert text and all(h["text"] for h in text)
    scenes = [
        (a["asset_id"], s["start"], s["end"], s["ocr_text"], s["transcript"])
        for a in get(base, "/v1/assets").json()["assets"]
        for s in get(base, f"/v1/assets/{a['asset_id']}/scenes").json()["scenes"]
    ]

    def covers_a_scene_with(hit: dict[str, Any], signal: int) -> bool:
        """A hit spans its scene (and may reach out to the sentence or caption that matched)."""
        return any(
            asset == hit["asset_id"] and hit["start"] <= start and end <= hit["end"] and row[signal]
            for row in scenes
            for asset, start, end in [row[:3]]
        )

    assert all(covers_a_scene_with(h, 3) for h in text), text
    speech = get(base, "/v1/search", params={"q": q, "kind": "speech", "k": 20}).json()["results"]
    assert speech and all(covers_a_scene_with(h, 4) for h in speech), speech
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert get(base, "/v1/search", params={"q": q, "after": future}).json()["results"] == []
    assert get(base, "/v1/search", params={"q": q, "before": future}).json()["results"]
    first = get(base, "/v1/search", params={"q": q, "k": 2}).json()
    assert len(first["results"]) == 2 and first["next_cursor"]
    second = get(base, "/v1/search", params={"q": q, "k": 2, "cursor": first["next_cursor"]}).json()
    both = get(base, "/v1/search", params={"q": q, "k": 4}).json()["results"]
    key = [(h["asset_id"], h["start"]) for h in both]
    assert [(h["asset_id"], h["start"]) for h in first["results"] + second["results"]] == key
    other = get(base, "/v1/search", params={"q": "other words", "k": 2, "cursor": first["next_cursor"]})
    assert other.status_code == 400 and other.json()["code"] == "invalid_parameter"


# -- 2 (continued). delete and re-index, on an organisation of their own -----------------------------


def test_reindex_then_delete(base: str, engine: Engine, media_dir: Path) -> None:
    clip = media_dir / "lifecycle.mp4"
    make_clip([Segment(4.0, caption="LIFECYCLE ORCHARD")], clip)
    (result,) = engine.index([clip], org="lifecycle")
    assert result.status == "ready"
    asset_id = get(base, "/v1/assets", org="lifecycle").json()["assets"][0]["asset_id"]
    before = get(base, f"/v1/assets/{asset_id}", org="lifecycle").json()
    resp = requests.post(f"{base}/v1/assets/{asset_id}/reindex", headers=auth("lifecycle"), timeout=60)
    assert resp.status_code == 202 and resp.json() == {
        "asset_id": asset_id,
        "job_id": f"job-{asset_id}",
        "status": "queued",
    }

    def reindexed() -> bool:
        now = get(base, f"/v1/assets/{asset_id}", org="lifecycle").json()
        return now["status"] == "ready" and now["indexed_at"] > before["indexed_at"]

    wait_for(reindexed, timeout=600, what="the re-index to finish")
    hit = get(base, "/v1/search", org="lifecycle", params={"q": "orchard"}).json()["results"]
    assert hit and hit[0]["asset_id"] == asset_id
    thumb_key = engine.scene(asset_id, 0, org="lifecycle")["thumbnail"]  # type: ignore[index]
    assert engine.derived.exists(thumb_key)

    gone = requests.delete(f"{base}/v1/assets/{asset_id}", headers=auth("lifecycle"), timeout=60)
    assert gone.status_code == 200 and gone.json() == {
        "asset_id": asset_id,
        "deleted": True,
        "source": str(clip),
    }
    assert get(base, f"/v1/assets/{asset_id}", org="lifecycle").status_code == 404
    assert get(base, "/v1/search", org="lifecycle", params={"q": "orchard"}).json()["results"] == []
    assert not engine.derived.exists(thumb_key) and not engine.derived.exists(
        f"derived/lifecycle/sidecars/{asset_id}.json"
    )
    assert clip.exists()  # the original stays
    assert requests.get(hit[0]["media_url"], timeout=60).status_code == 404
    # A folder run does not bring the same version back ...
    (again,) = engine.index([clip], org="lifecycle")
    assert again.note == DELETED_NOTE and get(base, "/v1/assets", org="lifecycle").json()["assets"] == []
    # ... a changed file is a new version, so a new asset, which is not deleted.
    clip.write_bytes(clip.read_bytes() + b"\0")
    changed = engine.asset_ref(clip, "lifecycle")
    assert not engine.is_deleted(changed.source, changed.version, org="lifecycle")
    assert json.loads(gone.text)["deleted"] is True


# -- 5. uploads (embedded: streamed into HEIMDEX_HOME, then indexed) ---------------------------------


def test_upload_limits_names_and_idempotency(base: str, home: Path, engine: Engine) -> None:
    def post(body: Any, key: str | None = None) -> requests.Response:
        headers = {**auth("uploader"), **({"Idempotency-Key": key} if key else {})}
        return requests.post(f"{base}/v1/uploads", json=body, headers=headers, timeout=60)

    made = post({"filename": "../../etc/pa\x01ss wd;rm.mp4", "size": 10, "content_type": "video/mp4"}, "k-1")
    assert made.status_code == 201, made.text
    up = made.json()
    assert up["filename"] == "pa_ss wd_rm.mp4" and up["status"] == "pending" and up["upload_method"] == "PUT"
    assert Path(up["source"]).parent == (home / "uploads" / "uploader" / up["upload_id"]).absolute()
    again = post({"filename": "../../etc/pa\x01ss wd;rm.mp4", "size": 10, "content_type": "video/mp4"}, "k-1")
    assert again.status_code == 200 and again.json()["upload_id"] == up["upload_id"]
    other = post({"filename": "else.mp4", "size": 10, "content_type": "video/mp4"}, "k-1")
    assert other.status_code == 409 and other.json()["code"] == "conflict"
    assert (
        post({"filename": "x.mp4", "size": 10, "content_type": "video/mp4"}).json()["upload_id"]
        != up["upload_id"]
    )
    huge = post({"filename": "big.mp4", "size": 10**12, "content_type": "video/mp4"})
    assert huge.status_code == 413 and huge.json()["code"] == "payload_too_large"
    text = post({"filename": "notes.txt", "size": 10, "content_type": "text/plain"})
    assert text.status_code == 415 and text.json()["code"] == "unsupported_media_type"
    for bad in ({"filename": "", "size": 1, "content_type": "video/mp4"}, {"size": 1}, "not json"):
        resp = post(bad)
        assert resp.status_code == 400 and resp.json()["code"] == "invalid_request", bad
    # the bytes: exactly the size declared
    url = up["upload_url"]
    short = requests.put(url, data=b"123", headers=auth("uploader"), timeout=60)
    assert short.status_code == 400 and short.json()["code"] == "invalid_request"
    long = requests.put(url, data=b"x" * 11, headers=auth("uploader"), timeout=60)
    assert long.status_code == 413
    assert get(base, f"/v1/uploads/{up['upload_id']}", org="intruder").status_code == 404
    assert get(base, f"/v1/uploads/{up['upload_id']}", org="uploader").json()["status"] == "pending"
    # One sender at a time: while another request is receiving the bytes, a second is refused.
    assert engine.claim_upload(up["upload_id"], org="uploader")
    busy = requests.put(url, data=b"x" * 10, headers=auth("uploader"), timeout=60)
    assert busy.status_code == 409 and "receiving" in busy.json()["error"]


def test_an_uploaded_file_is_indexed_found_and_deleted(base: str, media_dir: Path) -> None:
    clip = media_dir / "upload-src.mp4"
    make_clip([Segment(4.0, caption="UPLOADED WALRUS PARADE")], clip)
    size = clip.stat().st_size
    up = requests.post(
        f"{base}/v1/uploads",
        json={"filename": "walrus parade.mp4", "size": size, "content_type": "video/mp4"},
        headers=auth("uploader"),
        timeout=60,
    ).json()

    def chunks() -> Iterator[bytes]:  # streamed (chunked transfer), as a large file would be
        with clip.open("rb") as fh:
            while data := fh.read(64 * 1024):
                yield data

    sent = requests.put(up["upload_url"], data=chunks(), headers=auth("uploader"), timeout=120)
    assert sent.status_code == 200 and sent.json()["status"] == "received", sent.text
    assert Path(up["source"]).read_bytes() == clip.read_bytes()

    def finished() -> dict[str, Any] | None:
        now = get(base, f"/v1/uploads/{up['upload_id']}", org="uploader").json()
        return now if now["status"] in ("ready", "failed") else None

    done = wait_for(finished, timeout=600, what="the upload to be indexed")
    assert done["status"] == "ready" and done["asset_id"], done
    hits = get(base, "/v1/search", org="uploader", params={"q": "walrus parade"}).json()["results"]
    assert hits and hits[0]["asset_id"] == done["asset_id"] and hits[0]["source"] == up["source"]
    gone = requests.delete(f"{base}/v1/assets/{done['asset_id']}", headers=auth("uploader"), timeout=60)
    assert gone.status_code == 200
    assert get(base, "/v1/search", org="uploader", params={"q": "walrus parade"}).json()["results"] == []
