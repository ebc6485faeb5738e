"""People (issue 15): real faces found in clips, grouped across assets, named once, searchable.

The clips are composed at test time from real photographs (the face_recognition 1.3.0 sdist, see
tests/face_media.py) and real footage (Big Buck Bunny, ffmpeg's test pattern), and indexed by the
real pipeline with dlib's models from the face_recognition_models package, into organisations of
their own on the session's database.
"""

from __future__ import annotations

import io
import itertools
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from heimdex.domain import AssetRef, make_asset_id
from heimdex.embedded.engine import Engine
from heimdex.media import faces
from heimdex.models import Models
from heimdex.vectorstore import people as people_store
from heimdex.vectorstore import store
from heimdex.vectorstore.people import NoSuchPerson
from tests import face_media
from tests.conftest import settings_for

ORG = "people-test"
OTHER = "people-other"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return face_media.face_photos(tmp_path_factory.mktemp("face-photos"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Path]) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("face-clips")
    bbb = face_media.bunny(folder)
    p = {k: str(v) for k, v in photos.items()}
    return {
        # Obama held still, other footage, Biden held still.
        "interview": face_media.compose(
            folder / "interview.mp4",
            [("still", p["obama.jpg"], 3), ("bars", "", 3), ("still", p["biden.jpg"], 3)],
            captions={0: "PRESS CONFERENCE"},
        ),
        # Another photograph of Obama, zoomed; a cartoon; both men side by side.
        "speech": face_media.compose(
            folder / "speech.mp4",
            [
                ("zoom", p["obama2.jpg"], 4),
                ("video", str(bbb), 3),
                ("pair", f"{p['obama_partial_face2.jpg']}|{p['biden.jpg']}", 3),
            ],
        ),
        "bunny": face_media.compose(folder / "bunny.mp4", [("video", str(bbb), 8)]),
    }


@pytest.fixture(scope="module")
def indexed(engine: Engine, clips: dict[str, Path]) -> dict[str, Any]:
    results = engine.index(list(clips.values()), org=ORG)
    assert all(r.status == "ready" for r in results), results
    return {name: str(path) for name, path in clips.items()}


def groups(engine: Engine) -> dict[int, dict[str, Any]]:
    """Person id -> the person with appearances, for ORG."""
    return {p["id"]: engine.person(p["id"], org=ORG) for p in engine.people(org=ORG)}


def who_is(engine: Engine, indexed: dict[str, str], clip: str, at: float) -> set[int]:
    """The people seen in a clip at a time."""
    return {
        pid
        for pid, person in groups(engine).items()
        for a in person["appearances"]
        if a["source"] == indexed[clip] and a["start"] - 0.6 <= at <= a["end"] + 0.6
    }


def test_threshold_separates_the_test_photographs(photos: dict[str, Path], engine: Engine) -> None:
    """The configured match distance lies between every same-person and every different-person
    distance of the real photographs (same 0.23-0.43, different 0.82-0.87 when measured)."""
    models = Models(engine.settings).faces()
    vecs = {}
    for name, path in photos.items():
        from PIL import Image

        found = faces.photo_embeddings(models, np.asarray(Image.open(path).convert("RGB")))
        assert len(found) == 1, name
        vecs[name] = found[0]
    same, different = [], []
    for a, b in itertools.combinations(vecs, 2):
        d = float(np.linalg.norm(vecs[a] - vecs[b]))
        (same if face_media.SAME_PERSON[a] == face_media.SAME_PERSON[b] else different).append(d)
    threshold = engine.settings.faces_match_distance
    assert max(same) < threshold < min(different), (sorted(same), sorted(different))


def test_the_proposal_path_finds_the_faces_the_whole_frame_search_finds(
    photos: dict[str, Path], engine: Engine
) -> None:
    """The faces stage's detection (a Haar cascade proposes, HOG confirms on a region) finds every
    face HOG over the whole frame finds in the real photographs as the clips show them (the upper
    square of each portrait, at three heights on a 640x360 frame), with the same box, for the default
    minimum face size and a smaller one; and it is the default."""
    import cv2

    models = Models(engine.settings).faces()
    assert models.proposer is not None
    found = 0
    for name, path in photos.items():
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        top = rgb[: min(rgb.shape[:2])]
        for height in (360, 240, 180):
            img = cv2.resize(top, (min(640, round(top.shape[1] * height / top.shape[0])), height))
            frame = np.zeros((360, 640, 3), np.uint8)
            x = (640 - img.shape[1]) // 2
            frame[:height, x : x + img.shape[1]] = img
            for min_size in (80, 48):  # 48: below HOG's 80-px window, searched at twice the size
                whole = faces.detect(models, frame, 0.0, min_size, exhaustive=True)
                proposed = faces.detect(models, frame, 0.0, min_size)
                for d in whole:
                    best = max((faces.iou(d.box, e.box) for e in proposed), default=0.0)
                    assert best >= 0.5, (name, height, min_size, d.box, [e.box for e in proposed])
                found += len(whole)
    # 6 photos x 3 heights x 2 sizes; some faces are under 80 px at the smaller heights.
    assert found >= 24


def test_one_person_across_two_assets_is_one_group_and_two_people_stay_apart(
    engine: Engine, indexed: dict[str, str]
) -> None:
    obama_interview = who_is(engine, indexed, "interview", 1.5)
    obama_speech = who_is(engine, indexed, "speech", 2.0)
    biden = who_is(engine, indexed, "interview", 7.5)
    assert len(obama_interview) == 1 and obama_interview == obama_speech
    assert len(biden) == 1 and biden.isdisjoint(obama_interview)
    # Both side by side: the same two groups, no third.
    assert who_is(engine, indexed, "speech", 8.5) == obama_interview | biden
    people = engine.people(org=ORG)
    assert {p["id"] for p in people} == obama_interview | biden, people
    (obama,) = obama_interview
    listed = {p["id"]: p for p in people}
    assert listed[obama]["assets"] == 2 and listed[obama]["cover"]
    assert Path(listed[obama]["cover"]).is_file()


def test_a_cartoon_yields_no_person(engine: Engine, indexed: dict[str, str]) -> None:
    seen = [a for p in groups(engine).values() for a in p["appearances"] if a["source"] == indexed["bunny"]]
    assert seen == []
    # ... nor in the cartoon's shot of the speech clip (4-7 s).
    assert who_is(engine, indexed, "speech", 5.5) == set()


def test_the_sidecar_records_faces_per_scene(engine: Engine, indexed: dict[str, str]) -> None:
    doc = engine.sidecar(indexed["interview"], org=ORG)
    assert doc is not None
    with_faces = [(sc["start"], f["person"]) for sc in doc["scenes"] for f in sc.get("faces", [])]
    persons = {p for _, p in with_faces}
    assert len(persons) == 2, with_faces
    assert all(0 <= v <= 1 for sc in doc["scenes"] for f in sc.get("faces", []) for v in f["box"])
    assert doc["models"]["faces"].startswith("dlib:")
    assert doc["stages"]["faces"] == {"status": "done"}


def run_cli(heimdex_cmd: list[str], cli_env: dict[str, str], *args: str, ok: bool = True) -> Any:
    proc = subprocess.run(
        [*heimdex_cmd, *args, "--org", ORG], env=cli_env, capture_output=True, text=True, timeout=300
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_enrol_names_the_group_and_naming_finds_every_appearance(
    engine: Engine,
    indexed: dict[str, str],
    photos: dict[str, Path],
    heimdex_cmd: list[str],
    cli_env: dict[str, str],
) -> None:
    (obama,) = who_is(engine, indexed, "interview", 1.5)
    (biden,) = who_is(engine, indexed, "interview", 7.5)
    # obama3.jpg is in no clip: enrolling with it names the group seen in both clips.
    enrolled = json.loads(
        run_cli(
            heimdex_cmd, cli_env, "people", "enrol", "Barack Obama", str(photos["obama3.jpg"]), "--json"
        ).stdout
    )
    assert enrolled["id"] == obama and enrolled["name"] == "Barack Obama" and enrolled["assets"] == 2
    run_cli(heimdex_cmd, cli_env, "people", "name", str(biden), "Joe Biden")
    listing = json.loads(run_cli(heimdex_cmd, cli_env, "people", "--json").stdout)
    assert {p["name"] for p in listing} == {"Barack Obama", "Joe Biden"}
    assert set(listing[0]) == {"id", "name", "faces", "assets", "cover", "cover_face", "cover_asset"}

    # A name given once finds the person's appearances in both assets, with no query ...
    hits = json.loads(run_cli(heimdex_cmd, cli_env, "search", "--person", "barack obama", "--json").stdout)
    assert {h["source"] for h in hits} == {indexed["interview"], indexed["speech"]}
    assert all({"id": obama, "name": "Barack Obama"} in h["people"] for h in hits)
    # ... both people: only the scene where they are seen together.
    both = json.loads(
        run_cli(
            heimdex_cmd, cli_env, "search", "--person", "Barack Obama", "--person", str(biden), "--json"
        ).stdout
    )
    assert [(h["source"], h["start"]) for h in both] == [(indexed["speech"], pytest.approx(7.0, abs=0.6))]
    assert {p["name"] for p in both[0]["people"]} == {"Barack Obama", "Joe Biden"}
    # ... and with a query: only the person's scenes, ranked.
    ranked = json.loads(
        run_cli(heimdex_cmd, cli_env, "search", "a man speaking", "--person", "Joe Biden", "--json").stdout
    )
    assert ranked and all({"id": biden, "name": "Joe Biden"} in h["people"] for h in ranked)
    # A plain search lists the people of every hit too.
    plain = engine.search("press conference", org=ORG, k=5)
    assert plain[0]["source"] == indexed["interview"] and plain[0]["start"] == 0.0
    assert plain[0]["people"] == [{"id": obama, "name": "Barack Obama"}]
    # An unknown name is an error, not an empty answer.
    proc = run_cli(heimdex_cmd, cli_env, "search", "--person", "Nobody Known", ok=False)
    assert proc.returncode == 2 and "no person 'Nobody Known'" in proc.stderr


def test_people_are_confined_to_their_organisation(engine: Engine, indexed: dict[str, str]) -> None:
    ids = [p["id"] for p in engine.people(org=ORG)]
    assert ids and engine.people(org=OTHER) == []
    with pytest.raises(NoSuchPerson):
        engine.person(ids[0], org=OTHER)
    with pytest.raises(NoSuchPerson):
        engine.name_person(ids[0], "Stolen", org=OTHER)
    with pytest.raises(NoSuchPerson):
        engine.search("", org=OTHER, people=[str(ids[0])])
    with engine.db.org_tx(OTHER) as conn:
        assert conn.execute("SELECT count(*) FROM faces").fetchone() == (0,)


def test_person_search_honours_the_search_filters(
    engine: Engine, indexed: dict[str, str], heimdex_cmd: list[str], cli_env: dict[str, str]
) -> None:
    """source, asset, kind, lang, after/before and pages narrow a person's scenes exactly as they
    narrow a plain search, with and without a query; none is ignored."""
    (obama,) = who_is(engine, indexed, "interview", 1.5)
    person = [str(obama)]

    def sources(hits: list[dict[str, Any]]) -> set[str]:
        return {h["source"] for h in hits}

    everything = engine.search("", org=ORG, people=person, k=50)
    assert sources(everything) == {indexed["interview"], indexed["speech"]}
    for query in ("", "press conference"):
        only = engine.search(query, org=ORG, people=person, source=indexed["speech"])
        assert only and sources(only) == {indexed["speech"]}
        asset = next(h["asset_id"] for h in everything if h["source"] == indexed["interview"])
        assert sources(engine.search(query, org=ORG, people=person, asset=asset)) == {indexed["interview"]}
        # Only the interview's first shot has on-screen text (its caption); no clip has speech.
        text = engine.search(query, org=ORG, people=person, kind="text")
        assert text and sources(text) == {indexed["interview"]} and all(h["text"] for h in text)
        assert engine.search(query, org=ORG, people=person, kind="speech") == []
        assert engine.search(query, org=ORG, people=person, lang="de") == []
        future = datetime.now(UTC) + timedelta(days=1)
        assert engine.search(query, org=ORG, people=person, after=future) == []
        assert len(engine.search(query, org=ORG, people=person, before=future)) >= 2
        # Pages: the second page goes on where the first stopped.
        first = engine.search(query, org=ORG, people=person, k=1)
        second = engine.search(query, org=ORG, people=person, k=1, offset=1)
        both = engine.search(query, org=ORG, people=person, k=2)
        assert [(h["asset_id"], h["scene"]) for h in first + second] == [
            (h["asset_id"], h["scene"]) for h in both
        ]
    # The CLI passes them on (--source was once ignored with --person).
    hits = json.loads(
        run_cli(
            heimdex_cmd, cli_env, "search", "--person", str(obama), "--source", indexed["speech"], "--json"
        ).stdout
    )
    assert hits and sources(hits) == {indexed["speech"]}


def test_the_faces_stage_searches_the_frames_the_shots_stage_decoded(
    engine: Engine, clips: dict[str, Path]
) -> None:
    """The shots stage hands over the frames (1 a second in each shot, and the keyframes) in one
    object; the faces stage searches those without decoding the video, removes them once used, and
    finds the same tracks as a decode of its own (what it does when none were handed over)."""
    from dataclasses import replace

    from heimdex.media.faceframes import sample_times
    from heimdex.stages import faces as faces_stage
    from heimdex.stages import shots as shots_stage

    (result,) = engine.index([clips["interview"]], org="people-frames")
    assert result.status == "ready", result
    ctx = engine.context(result.ref)
    ctx = replace(ctx, part=0 if len(ctx.segments) > 1 else None)
    shots_doc = ctx.read_output("shots")
    handed = shots_doc["face_frames"]
    times = [f["time"] for f in handed["frames"]]
    wanted = sample_times(shots_doc["shots"], shots_doc["keyframes"], engine.settings.faces_sample_fps)
    assert len(times) == len(wanted) and all(0 <= t - w < 0.55 for t, w in zip(times, wanted, strict=True))
    assert not ctx.derived.exists(handed["pack"])  # used by the pipeline's faces task, then removed

    shots_stage.run(ctx)  # hands them over again
    assert ctx.derived.exists(handed["pack"])
    from_shots = faces_stage.run(ctx)
    assert not ctx.derived.exists(handed["pack"]) and from_shots["frames"] == len(times)
    decoded = faces_stage.run(ctx)  # nothing handed over now: the stage decodes the segment itself
    assert len(from_shots["tracks"]) == len(decoded["tracks"]) == 2
    for a, b in zip(from_shots["tracks"], decoded["tracks"], strict=True):
        assert a["shot"] == b["shot"] and abs(a["start"] - b["start"]) < 0.1
        assert float(np.linalg.norm(np.subtract(a["embedding"], b["embedding"]))) < 0.1


# -- grouping, merge, regroup, forget, delete: the store with real embeddings, no video ------------


@pytest.fixture(scope="module")
def embeddings(photos: dict[str, Path], engine: Engine) -> dict[str, np.ndarray]:
    from PIL import Image

    models = Models(engine.settings).faces()
    return {
        name: faces.photo_embeddings(models, np.asarray(Image.open(path).convert("RGB")))[0]
        for name, path in photos.items()
    }


def add_asset(engine: Engine, org: str, source: str) -> AssetRef:
    ref = AssetRef(org, make_asset_id(org, source, "v1"), source, "v1")
    with engine.db.org_tx(org) as conn:
        store.upsert_processing(conn, ref)
    return ref


def face(ref: AssetRef, vec: np.ndarray, start: float = 0.0) -> people_store.FaceRow:
    return people_store.FaceRow(
        ref.asset_id, start, start + 1, 0, 0, [0.1, 0.1, 0.3, 0.3], 0.5, vec, "t", None
    )


def test_merge_regroup_forget_and_delete(engine: Engine, embeddings: dict[str, np.ndarray]) -> None:
    org, t = "people-store", engine.settings.faces_match_distance
    a, b = add_asset(engine, org, "/archive/a.mp4"), add_asset(engine, org, "/archive/b.mp4")
    with engine.db.org_tx(org) as conn:
        # Grouping as indexing does it: Obama twice in a, once in b; Biden in b.
        pa = people_store.replace_faces(conn, org, a.asset_id, [face(a, embeddings["obama.jpg"])], t)
        pb = people_store.replace_faces(
            conn,
            org,
            b.asset_id,
            [face(b, embeddings["obama2.jpg"]), face(b, embeddings["biden.jpg"], 5)],
            t,
        )
        assert pa[0] == pb[0] != pb[1]
        obama, biden = pb
        people_store.rename(conn, org, obama, "Barack Obama")
        # Split Obama by hand into a second, unnamed person: merge brings them back, keeping the name.
        extra = people_store.new_person(conn, org)
        conn.execute(
            "UPDATE faces SET person_id = %s WHERE asset_id = %s AND person_id = %s",
            (extra, a.asset_id, obama),
        )
        people_store.merge(conn, org, extra, obama)
        assert people_store.get_person(conn, org, extra)["name"] == "Barack Obama"
        assert people_store.get_person(conn, org, extra)["faces"] == 2
        with pytest.raises(NoSuchPerson):
            people_store.get_person(conn, org, obama)
        obama = extra
        # A full regroup keeps both names and both groups.
        people_store.rename(conn, org, biden, "Joe Biden")
        result = people_store.regroup(conn, org, t)
        assert result["faces"] == 3
        named = {p["name"]: p for p in people_store.list_people(conn, org)}
        assert set(named) == {"Barack Obama", "Joe Biden"}
        assert named["Barack Obama"]["id"] == obama and named["Barack Obama"]["faces"] == 2
        # A future appearance joins the named person: a name applies without re-indexing.
    c, d = add_asset(engine, org, "/archive/c.mp4"), add_asset(engine, org, "/archive/d.mp4")
    with engine.db.org_tx(org) as conn:
        (pc,) = people_store.replace_faces(
            conn, org, c.asset_id, [face(c, embeddings["obama_partial_face.jpg"])], t
        )
        assert pc == obama
        # Deleting an asset deletes its faces, whatever deletes it (ON DELETE CASCADE).
        store.delete_source(conn, "/archive/c.mp4")
        assert conn.execute("SELECT count(*) FROM faces WHERE asset_id = %s", (c.asset_id,)).fetchone() == (
            0,
        )
        # Forget: the person and every embedding of theirs are gone; the next appearance is a stranger.
        people_store.forget(conn, org, obama)
        assert conn.execute("SELECT count(*) FROM faces WHERE person_id = %s", (obama,)).fetchone() == (0,)
        assert [p["name"] for p in people_store.list_people(conn, org)] == ["Joe Biden"]
        (again,) = people_store.replace_faces(conn, org, d.asset_id, [face(d, embeddings["obama3.jpg"])], t)
        assert again not in (obama, biden)
        assert people_store.get_person(conn, org, again)["name"] is None


# -- off switches and a missing model ----------------------------------------------------------------


def test_faces_off_for_everyone_or_one_organisation(
    home: Path, clips: dict[str, Path], engine: Engine
) -> None:
    """HEIMDEX_FACES=off, or an organisation in HEIMDEX_NO_FACES_ORGS: the stage is skipped with the
    reason, the asset is indexed without faces and no face or person is stored."""
    cases = [
        ({"faces": "off"}, "people-off", "faces are off (HEIMDEX_FACES=off)"),
        (
            {"no_faces_orgs": ["people-quiet"]},
            "people-quiet",
            "faces are off (the organisation is set to no faces)",
        ),
    ]
    for overrides, org, reason in cases:
        eng = Engine(settings_for(home, **overrides))
        try:
            (result,) = eng.index([clips["interview"]], org=org)
            assert result.status == "ready", result
            (asset,) = eng.assets(org=org)
            assert asset["skipped"]["faces"] == reason
            assert eng.people(org=org) == []
            with eng.db.org_tx(org) as conn:
                assert conn.execute("SELECT count(*) FROM faces").fetchone() == (0,)
            doc = eng.sidecar(str(clips["interview"]), org=org)
            assert doc is not None and doc["stages"]["faces"] == {"status": "skipped", "note": reason}
            assert not any(sc.get("faces") for sc in doc["scenes"])
        finally:
            eng.close()


def test_missing_face_models_are_reported_before_indexing(tmp_path: Path) -> None:
    from heimdex.models import ModelUnavailable

    models = Models(settings_for(tmp_path, faces_models=str(tmp_path / "nowhere")))
    (problem,) = models.check(["faces"])
    assert problem.stage == "faces" and not problem.fatal
    assert "shape_predictor_5_face_landmarks.dat" in problem.problem and "faces will be skipped" in str(
        problem
    )
    with pytest.raises(ModelUnavailable):
        models.faces()
    assert Models(settings_for(tmp_path, faces="off", faces_models=str(tmp_path))).check(["faces"]) == []


# -- the HTTP API ----------------------------------------------------------------------------------------


def test_the_api_mirrors_the_cli(engine: Engine, indexed: dict[str, str], photos: dict[str, Path]) -> None:
    from heimdex.api.app import create_app
    from heimdex.api.auth import issue_token
    from tests.conftest import JWT_SECRET

    client = create_app(engine).test_client()
    auth = {"Authorization": f"Bearer {issue_token(JWT_SECRET, ORG)}"}
    other = {"Authorization": f"Bearer {issue_token(JWT_SECRET, OTHER)}"}
    (obama,) = who_is(engine, indexed, "interview", 1.5)
    (biden,) = who_is(engine, indexed, "interview", 7.5)

    listed = client.get("/v1/people", headers=auth).get_json()["people"]
    assert {p["id"] for p in listed} == {obama, biden}
    assert client.get("/v1/people", headers=other).get_json() == {"people": []}

    # Name through PATCH; GET lists the appearances in both assets.
    resp = client.patch(f"/v1/people/{obama}", json={"name": "President Obama"}, headers=auth)
    assert resp.status_code == 200 and resp.get_json()["name"] == "President Obama"
    detail = client.get(f"/v1/people/{obama}", headers=auth).get_json()
    assert {a["source"] for a in detail["appearances"]} == {indexed["interview"], indexed["speech"]}
    assert all(a["thumbnail"] and a["end"] >= a["start"] for a in detail["appearances"])
    # Another organisation's person is not there, for every verb.
    assert client.get(f"/v1/people/{obama}", headers=other).status_code == 404
    assert client.patch(f"/v1/people/{obama}", json={"name": "x"}, headers=other).status_code == 404
    assert client.delete(f"/v1/people/{obama}", headers=other).status_code == 404
    assert client.post(f"/v1/people/{obama}/merge", json={"other": biden}, headers=other).status_code == 404
    assert client.get(f"/v1/people/{2**64}", headers=auth).status_code == 404
    assert client.patch(f"/v1/people/{obama}", json={"nom": "x"}, headers=auth).status_code == 400

    # person= on /v1/search: by name, repeatable, with and without q.
    hits = client.get("/v1/search", query_string={"person": "president obama"}, headers=auth).get_json()
    assert {h["source"] for h in hits["results"]} == {indexed["interview"], indexed["speech"]}
    both = client.get(
        "/v1/search", query_string=[("person", "President Obama"), ("person", str(biden))], headers=auth
    ).get_json()["results"]
    assert [h["source"] for h in both] == [indexed["speech"]]
    ranked = client.get(
        "/v1/search", query_string={"q": "press conference", "person": str(obama)}, headers=auth
    ).get_json()["results"]
    assert ranked[0]["start"] == 0.0 and {"id": obama, "name": "President Obama"} in ranked[0]["people"]
    # The search filters and pages hold with person= (typed: asset must be an asset id).
    asset = next(h["asset_id"] for h in hits["results"] if h["source"] == indexed["speech"])
    narrowed = client.get(
        "/v1/search", query_string={"person": str(obama), "asset": asset}, headers=auth
    ).get_json()["results"]
    assert narrowed and {h["asset_id"] for h in narrowed} == {asset}
    page = client.get("/v1/search", query_string={"person": str(obama), "k": 1}, headers=auth).get_json()
    following = client.get(
        "/v1/search",
        query_string={"person": str(obama), "k": 1, "cursor": page["next_cursor"]},
        headers=auth,
    ).get_json()["results"]
    assert [h["start"] for h in page["results"] + following] == [h["start"] for h in hits["results"][:2]]
    assert client.get("/v1/search", query_string={"person": ""}, headers=auth).status_code == 400
    assert client.get("/v1/search", headers=auth).get_json()["code"] == "invalid_parameter"
    unknown = client.get("/v1/search", query_string={"person": "Nobody"}, headers=auth)
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "not_found"
    assert client.get("/v1/search", query_string={"person": str(obama)}, headers=other).status_code == 404

    # Enrol with a photo: 201 and the matching group; a file that is not an image is a 400.
    with photos["obama3.jpg"].open("rb") as f:
        resp = client.post(
            "/v1/people", data={"name": "President Obama", "photo": (f, "obama3.jpg")}, headers=auth
        )
    assert resp.status_code == 201 and resp.get_json()["id"] == obama
    bad = client.post(
        "/v1/people", data={"name": "X", "photo": (io.BytesIO(b"not an image"), "x.jpg")}, headers=auth
    )
    assert bad.status_code == 400 and "not an image" in bad.get_json()["error"]
    # Enrolling Biden's photo under Obama's name is a conflict, not a silent rename.
    assert client.patch(f"/v1/people/{biden}", json={"name": "Joe Biden"}, headers=auth).status_code == 200
    with photos["biden.jpg"].open("rb") as f:
        clash = client.post(
            "/v1/people", data={"name": "President Obama", "photo": (f, "b.jpg")}, headers=auth
        )
    assert clash.status_code == 409
    # Merge into itself is refused.
    assert client.post(f"/v1/people/{obama}/merge", json={"other": obama}, headers=auth).status_code == 409


def test_face_crops_are_signed_urls_that_serve_only_the_organisations_crops(
    engine: Engine, indexed: dict[str, str]
) -> None:
    """Covers and appearances are signed URLs an <img> loads without credentials (issue 16); the
    bytes are the stored crop; an altered or expired URL is refused (403); a URL signed for another
    organisation, or naming a face of another asset, finds nothing (404)."""
    from urllib.parse import parse_qs, urlsplit

    from heimdex.api.app import create_app
    from heimdex.api.auth import issue_token
    from heimdex.api.signing import MediaSigner, media_key
    from tests.conftest import JWT_SECRET

    client = create_app(engine).test_client()
    auth = {"Authorization": f"Bearer {issue_token(JWT_SECRET, ORG)}"}
    listed = client.get("/v1/people", headers=auth).get_json()["people"]
    assert listed and all(p["cover_url"] for p in listed)
    for p in listed:
        resp = client.get(p["cover_url"])  # no Authorization header
        assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
        assert resp.data[:3] == b"\xff\xd8\xff" and resp.data == Path(p["cover"]).read_bytes()
    detail = client.get(f"/v1/people/{listed[0]['id']}", headers=auth).get_json()
    seen = detail["appearances"]
    assert len(seen) >= 2 and all(a["thumbnail_url"] for a in seen)
    for a in seen:
        resp = client.get(a["thumbnail_url"])
        assert resp.status_code == 200 and resp.data == Path(a["thumbnail"]).read_bytes()

    first, second = seen[0], next(a for a in seen if a["asset_id"] != seen[0]["asset_id"])
    url = urlsplit(first["thumbnail_url"])
    query = parse_qs(url.query)
    exp, sig = int(query["exp"][0]), query["sig"][0]
    altered = [
        url.path.replace(f"/faces/{first['face_id']}.jpg", f"/faces/{second['face_id']}.jpg")
        + f"?{url.query}",
        url.path.replace(f"/{ORG}/", f"/{OTHER}/") + f"?{url.query}",
        f"{url.path}?exp={exp + 1}&sig={sig}",
        f"{url.path}?exp={exp}&sig={sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",
    ]
    for bad in altered:
        assert client.get(bad).status_code == 403, bad
    signer = MediaSigner(media_key(engine.settings, JWT_SECRET), 300)
    assert (
        client.get(signer.path(ORG, first["asset_id"], f"faces/{first['face_id']}.jpg", now=0)).status_code
        == 403
    )

    # Correctly signed, but for another organisation, or for a face of another asset: 404.
    def signed(org: str, asset: str, face: int) -> int:
        return int(client.get(signer.path(org, asset, f"faces/{face}.jpg")).status_code)

    assert signed(ORG, first["asset_id"], first["face_id"]) == 200
    assert signed(OTHER, first["asset_id"], first["face_id"]) == 404
    assert signed(ORG, first["asset_id"], second["face_id"]) == 404
    assert signed(ORG, first["asset_id"], 10**17) == 404


def test_forget_erases_crops_and_stage_outputs_and_regroup_runs_from_the_cli(
    engine: Engine, clips: dict[str, Path], heimdex_cmd: list[str], cli_env: dict[str, str]
) -> None:
    org = "people-forget"
    (result,) = engine.index([clips["interview"]], org=org)
    assert result.status == "ready", result

    def cli(*args: str) -> Any:
        proc = subprocess.run(
            [*heimdex_cmd, "people", *args, "--org", org],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    before = cli("--json")
    assert len(before) == 2
    regrouped = cli("regroup")
    assert regrouped["faces"] == 2 and regrouped["people"] == 2
    person = before[0]["id"]
    crops = [a["thumbnail"] for a in engine.person(person, org=org)["appearances"]]
    assert crops and all(Path(c).is_file() for c in crops)
    outputs = list((engine.settings.home / "derived" / org).glob("*/faces.json"))
    tracks_before = sum(len(json.loads(o.read_text())["tracks"]) for o in outputs)
    erased = cli("forget", str(person))
    assert erased == {"id": person, "forgotten": True, "faces": len(crops)}
    assert [p["id"] for p in cli("--json")] == [before[1]["id"]]
    assert not any(Path(c).exists() for c in crops)
    tracks_after = [t for o in outputs for t in json.loads(o.read_text())["tracks"]]
    assert len(tracks_after) == tracks_before - len(crops)
    assert all(Path(t["thumb"]).name not in {Path(c).name for c in crops} for t in tracks_after)
    proc = subprocess.run(
        [*heimdex_cmd, "people", "forget", str(person), "--org", org],
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and f"no person {person}" in proc.stderr


def test_keyframes_first_skips_only_shots_without_a_face(engine: Engine, clips: dict[str, Path]) -> None:
    """HEIMDEX_FACES_KEYFRAMES_FIRST: the test pattern's shot is not searched beyond its keyframe;
    the shots with a face are searched at every sample."""
    from heimdex.media.faceframes import sample_times
    from heimdex.stages.faces import frames_at, keyframes_first

    models = Models(engine.settings).faces()
    shots = [{"start": 0.0, "end": 3.0}, {"start": 3.0, "end": 6.0}, {"start": 6.0, "end": 9.0}]
    keyframes = [{"time": 1.0}, {"time": 4.0}, {"time": 7.0}]
    frames = frames_at(str(clips["interview"]), sample_times(shots, keyframes, 1.0), 640, 0, 0.0)
    kf_times = {round(t, 3) for t, _ in frames if any(abs(t - k["time"]) < 0.05 for k in keyframes)}
    by_shot = [[(t, rgb) for t, rgb in frames if sh["start"] <= t < sh["end"]] for sh in shots]
    kept = [keyframes_first(models, f, kf_times, engine.settings.faces_min_size) for f in by_shot]
    assert [len(k) for k in kept] == [len(by_shot[0]), 0, len(by_shot[2])]
    assert all(len(f) >= 3 for f in by_shot)  # at least 1 a second in each 3-second shot


def test_the_faces_service_starts_with_faces_off_and_no_models(tmp_path: Path) -> None:
    """The cloud stage service preloads its model; with HEIMDEX_FACES=off it loads nothing (and a
    missing model does not stop it), with faces on a missing model is reported, not raised."""
    from types import SimpleNamespace

    from heimdex.cloud.service import preload

    for faces_on in ("off", "on"):
        settings = settings_for(tmp_path, faces=faces_on, faces_models=str(tmp_path / "nowhere"))
        preload("faces", SimpleNamespace(settings=settings, models=Models(settings)))  # type: ignore[arg-type]
