"""Text vectors without torch (heimdex.textenc): the ONNX export agrees with sentence-transformers, the
query paths (CLI search, the API server, the search function) import neither torch nor transformers,
a missing export is reported clearly, and the query-vector cache stays bounded.

The scene texts are every speech and caption line the project's clips are made from (the demo
samples and the test clips, read from their source); the queries are written like held-out queries:
paraphrases that share few words with the scene they are after.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from heimdex.cloud import functions as cloud
from heimdex.config import Settings
from heimdex.domain import AssetRef, make_asset_id
from heimdex.media.scenes import Scene
from heimdex.models import Models, ModelUnavailable
from heimdex.textenc import ExportMissing, OnnxTextEncoder, QueryCache
from heimdex.vectorstore import search as search_sql
from heimdex.vectorstore import store
from heimdex.vectorstore.db import Database

from .conftest import JWT_SECRET, settings_for

ROOT = Path(__file__).resolve().parents[1]
QUERIES = [
    "blaze at the port late at night",
    "who spoke about the fire near the fish market",
    "saving the lighthouse with seawater",
    "how to make bread with a starter",
    "letting dough rest in the refrigerator",
    "baking in a heavy pot until the crust is dark",
    "council approves a bridge for cyclists",
    "how much will the construction cost",
    "people want better lighting by the river",
    "lamp repair in bad weather",
    "tree planting by volunteers",
    "dinosaurs at the museum",
    "chess players from many nations",
    "results of the last round",
    "railway history",
    "storm warning",
    "evening news on the coast",
    "x",
    "Quel temps fera-t-il demain ?",
    "the " * 300,  # longer than the model's window
]
# torch and transformers, and the media libraries the search install no longer has
FORBIDDEN = ("torch", "transformers", "sentence_transformers", "cv2", "av", "faster_whisper", "open_clip")


def scene_texts() -> list[str]:
    """Every `speech=`/`caption=` string literal of the sample and test clip definitions."""
    files = [ROOT / "shared" / "heimdex" / "dev" / "samples.py", *sorted((ROOT / "tests").glob("*.py"))]
    found: list[str] = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg in ("speech", "caption"):
                value = node.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value.strip():
                    found.append(value.value)
    texts = list(dict.fromkeys(found))
    assert len(texts) >= 40, texts  # the corpus is the project's own: if it shrinks, this says so
    return texts


@pytest.fixture(scope="module")
def models() -> Models:
    return Models(Settings())


@pytest.fixture(scope="module")
def vectors(models: Models) -> dict[str, np.ndarray]:
    texts = scene_texts()
    torch_model, onnx_model = models.torch_text_encoder(), models.onnx_text_encoder()

    def enc(model: Any, items: list[str]) -> np.ndarray:
        out: np.ndarray = model.encode(items, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        return out

    return {
        "scenes_torch": enc(torch_model, texts),
        "scenes_onnx": enc(onnx_model, texts),
        # Queries one at a time, as the query path encodes them (no padding in the batch).
        "queries_torch": np.stack([enc(torch_model, [q])[0] for q in QUERIES]),
        "queries_onnx": np.stack([models.embed_query(q) for q in QUERIES]),
    }


@pytest.mark.slow
def test_onnx_vectors_match_sentence_transformers(vectors: dict[str, np.ndarray]) -> None:
    for kind in ("scenes", "queries"):
        a, b = vectors[f"{kind}_torch"], vectors[f"{kind}_onnx"]
        assert a.shape == b.shape and a.shape[1] == 384 and b.dtype == np.float32
        cosines = np.sum(a * b, axis=1)
        assert cosines.min() >= 0.999, (kind, float(cosines.min()))
        assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)


def load_scenes(db: Database, org: str, texts: list[str], vecs: np.ndarray, text_model: str) -> None:
    """The scene texts as rows of five assets (exact search: a small organisation)."""
    per_asset = -(-len(texts) // 5)
    with db.org_tx(org) as conn:
        for a in range(5):
            chunk = range(a * per_asset, min(len(texts), (a + 1) * per_asset))
            source = f"/archive/clip-{a}.mp4"
            ref = AssetRef(org, make_asset_id(org, source, "v1"), source, "v1")
            store.upsert_processing(conn, ref)
            rows = [
                store.SceneRow(
                    Scene(float(j), float(j) + 5.0, words=[{"w": w} for w in texts[i].split()]),
                    vecs[i].astype(np.float32),
                )
                for j, i in enumerate(chunk)
            ]
            store.replace_scenes(
                conn,
                ref,
                rows,
                duration=float(len(rows) * 5),
                sidecar="",
                text_model=text_model,
                image_model=None,
            )


@pytest.mark.slow
def test_top10_identical_through_the_search_sql(
    tmp_path_factory: pytest.TempPathFactory, models: Models, vectors: dict[str, np.ndarray]
) -> None:
    """Scenes indexed with either encoder, queried with either: the product's hybrid SQL returns the
    same ten scenes in the same order, with the same scores, as an index and queries made by
    sentence-transformers (scenes whose fused scores tie exactly may come in either order)."""
    db = Database(settings_for(tmp_path_factory.mktemp("textenc-db")))
    try:
        texts, name = scene_texts(), models.text_name
        load_scenes(db, "by-torch", texts, vectors["scenes_torch"], name)
        load_scenes(db, "by-onnx", texts, vectors["scenes_onnx"], name)

        def top10(org: str, query: str, vec: np.ndarray) -> list[tuple[float, set[tuple[str, float]]]]:
            """The first ten hits as (score, scenes) groups: scenes of one fused score tie exactly (RRF
            sums of ranks), and the SQL orders a tie by asset id, which differs between organisations;
            the group holding the tenth hit is read whole (k=20), so the cut does not split a tie."""
            with db.org_tx(org) as conn:
                rows = search_sql.search(conn, query, text_vec=vec, text_model=name, k=20)
            groups: list[tuple[float, set[tuple[str, float]]]] = []
            for n, r in enumerate(rows):
                if groups and groups[-1][0] == r["score"]:
                    groups[-1][1].add((r["source"], r["start_s"]))
                elif n < 10:
                    groups.append((r["score"], {(r["source"], r["start_s"])}))
                else:
                    break
            return groups

        for i, query in enumerate(QUERIES):
            baseline = top10("by-torch", query, vectors["queries_torch"][i])
            assert sum(len(scenes) for _, scenes in baseline) >= 10
            assert top10("by-torch", query, vectors["queries_onnx"][i]) == baseline, query
            assert top10("by-onnx", query, vectors["queries_onnx"][i]) == baseline, query
    finally:
        db.close()


def test_query_cache_is_bounded_and_shared() -> None:
    cache = QueryCache(2)
    vec = np.ones(3, dtype=np.float32)
    cache.put("a", vec)
    cache.put("b", vec * 2)
    assert cache.get("a") is vec  # "a" is now the most recent
    cache.put("c", vec * 3)
    assert cache.get("b") is None and len(cache) == 2
    assert cache.get("a") is not None and cache.get("c") is not None
    assert (cache.hits, cache.misses) == (3, 1)
    with pytest.raises(ValueError):
        vec[0] = 5.0  # a cached vector is shared between requests: read-only
    off = QueryCache(0)
    off.put("a", np.ones(3, dtype=np.float32))
    assert off.get("a") is None and len(off) == 0


def test_onnx_encoder_answers_like_a_sentence_transformer(models: Models) -> None:
    """What callers of `Models.text_encoder()` use keeps working with either backend behind it."""
    onnx = models.onnx_text_encoder()
    assert onnx.max_seq_length == 256 and onnx.get_sentence_embedding_dimension() == 384
    out = onnx.encode(["a", "bb"], batch_size=1, show_progress_bar=False, convert_to_numpy=True)
    assert out.shape == (2, 384) and out.dtype == np.float32
    assert onnx.encode([]).shape == (0, 384)


def test_embed_query_uses_the_cache(models: Models) -> None:
    first = models.embed_query("a repeated query about the harbour")
    assert models.embed_query("a repeated query about the harbour") is first
    assert first.dtype == np.float32 and first.shape == (384,)


# -- no torch on the query path -----------------------------------------------------------------------

PROBE = """
import sys
{body}
bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({forbidden!r}))
print("LOADED=" + ",".join(bad))
"""
CLI_SEARCH = """
from heimdex.cli import main
assert main(["search", "lighthouse lamp in a storm", "--json"]) == 0
"""
API_SEARCH = """
from heimdex.api.app import create_app
from heimdex.api.auth import issue_token
from heimdex.services import Services
engine = Services()
client = create_app(engine).test_client()
token = issue_token({secret!r}, "qp-org")
resp = client.get("/v1/search?q=lighthouse+lamp", headers={{"Authorization": "Bearer " + token}})
assert resp.status_code == 200, resp.get_data(as_text=True)
print("HITS=" + str(len(resp.get_json()["results"])))
engine.close()
"""
FUNCTION_SEARCH = """
import functions_framework
from heimdex.api.auth import issue_token
app = functions_framework.create_app(target="search", source={source!r}, signature_type="http")
token = issue_token({secret!r}, "qp-org")
resp = app.test_client().get("/v1/search?q=lighthouse+lamp", headers={{"Authorization": "Bearer " + token}})
assert resp.status_code == 200, resp.get_data(as_text=True)
print("HITS=" + str(len(resp.get_json()["results"])))
"""


@pytest.fixture(scope="module")
def query_home(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Iterator[dict[str, str]]:
    """A home with a few scenes in organisations `default` and `qp-org`, its server kept running."""
    home = tmp_path_factory.mktemp("textenc-query")
    db = Database(settings_for(home))
    texts = scene_texts()
    vecs = models.embed_texts(texts)
    load_scenes(db, "default", texts, vecs, models.text_name)
    load_scenes(db, "qp-org", texts, vecs, models.text_name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIMDEX_")}
    env.update(HEIMDEX_HOME=str(home), HEIMDEX_JWT_SECRET=JWT_SECRET, HEIMDEX_DATABASE_APP_URL=db.app_url)
    yield env
    db.close()


def probe(env: dict[str, str], body: str) -> subprocess.CompletedProcess[str]:
    script = PROBE.format(body=textwrap.dedent(body), forbidden=FORBIDDEN)
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize("path", ["cli", "api", "function"])
def test_query_paths_import_neither_torch_nor_transformers(query_home: dict[str, str], path: str) -> None:
    body = {
        "cli": CLI_SEARCH,
        "api": API_SEARCH.format(secret=JWT_SECRET),
        "function": FUNCTION_SEARCH.format(
            secret=JWT_SECRET, source=str(ROOT / "functions" / "search" / "main.py")
        ),
    }[path]
    env = dict(query_home)
    if path == "cli":
        env.pop("HEIMDEX_DATABASE_APP_URL")  # the CLI joins the home's running embedded server
    proc = probe(env, body)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED=\n" in proc.stdout, proc.stdout  # nothing of torch/transformers was imported
    if path == "cli":
        hits = json.loads(proc.stdout.split("LOADED=")[0])
        assert len(hits) == 10 and "lighthouse" in hits[0]["text"].lower()
    else:
        assert "HITS=10" in proc.stdout, proc.stdout


# -- a missing export -----------------------------------------------------------------------------------


def test_missing_export_is_a_clear_error(
    tmp_path: Path, query_home: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "no-export"
    with pytest.raises(ExportMissing, match="heimdex export-text-model"):
        OnnxTextEncoder(gone)
    models = Models(Settings(text_onnx=str(gone)))
    with pytest.raises(ModelUnavailable, match=f"no ONNX export of the text model at {gone}"):
        models.embed_query("anything")
    [problem] = models.check(["index"])
    assert problem.fatal and problem.setting == f"HEIMDEX_TEXT_ONNX={gone}"
    # The CLI: one line with the reason, the configuration exit code, no traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "heimdex.cli", "search", "lighthouse"],
        env={**query_home, "HEIMDEX_TEXT_ONNX": str(gone)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 78, proc.stderr
    assert "heimdex export-text-model" in proc.stderr and "Traceback" not in proc.stderr
    # The search function refuses to start (instance start-up), with the reason.
    monkeypatch.setenv("HEIMDEX_TEXT_ONNX", str(gone))
    monkeypatch.setattr(cloud, "_state", {})
    with pytest.raises(ModelUnavailable, match="heimdex export-text-model"):
        cloud.warm_search()


def test_an_export_of_another_model_is_refused(tmp_path: Path, models: Models) -> None:
    folder = tmp_path / "other"
    real = models.text_onnx_path()
    folder.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        (folder / name).symlink_to(real / name)
    manifest = json.loads((real / "heimdex-onnx.json").read_text())
    (folder / "heimdex-onnx.json").write_text(json.dumps({**manifest, "name": "st:another-model"}))
    other = Models(Settings(text_onnx=str(folder)))
    with pytest.raises(ModelUnavailable, match="is of st:another-model, not st:all-MiniLM-L6-v2"):
        other.onnx_text_encoder()


@pytest.mark.slow
def test_export_from_the_installed_model(tmp_path: Path, models: Models) -> None:
    """What set-up runs: the installed sentence-transformers model to a self-contained folder whose
    vectors match (the export checks itself before it writes its manifest)."""
    out = models.export_text_model(tmp_path / "export")
    manifest = json.loads((out / "heimdex-onnx.json").read_text())
    assert manifest["name"] == models.text_name and manifest["dim"] == 384
    assert manifest["max_seq_length"] == 256 and manifest["pooling"] == "mean"
    fresh = OnnxTextEncoder(out).encode(QUERIES[:5])
    expected = models.torch_text_encoder().encode(QUERIES[:5], normalize_embeddings=True)
    assert np.sum(fresh * expected, axis=1).min() >= 0.999


# -- what the search install pulls in ---------------------------------------------------------------


def closure(requirements: list[str]) -> set[str]:
    """Every distribution the requirements pull in, transitively, from the installed packages' own
    metadata (extras followed where asked for, environment markers evaluated)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [(Requirement(r), frozenset(Requirement(r).extras)) for r in requirements]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            subs = requires(req.name) or []
        except PackageNotFoundError:
            continue  # not installed here (an optional platform package): nothing to follow
        for raw in subs:
            sub = Requirement(raw)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append((sub, frozenset(sub.extras)))
    return seen


def test_the_search_install_has_no_torch() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    function_reqs = (ROOT / "functions" / "search" / "requirements.txt").read_text().split()
    assert "./heimdex-src" in function_reqs  # the base package: no extra named
    pulled = closure([*project["dependencies"], "functions-framework>=3.5"])
    assert {"onnxruntime", "tokenizers", "psycopg", "flask"} <= pulled
    heavy = {"torch", "transformers", "sentence-transformers", "opencv-python-headless", "av"}
    assert not pulled & heavy, pulled & heavy
    # Indexing still gets what it needs through the extra.
    assert {"torch", "sentence-transformers", "onnx"} <= closure(project["optional-dependencies"]["pipeline"])
    # The search image: the base package plus the export copied from the stage that made it.
    dockerfile = (ROOT / "containers" / "Dockerfile").read_text()
    search = dockerfile.split("AS search\n", 1)[1].split("\nFROM ", 1)[0]
    assert "torch==" not in search and "[pipeline]" not in search
    assert "COPY --from=text-onnx" in search and "HEIMDEX_TEXT_ONNX=" in search
