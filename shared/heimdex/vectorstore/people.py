"""Faces and people in PostgreSQL (010_people.sql), always inside an org-scoped transaction.

Grouping is incremental: a new face track joins the person of the nearest face of its organisation
when the Euclidean distance of their embeddings is within `threshold`, else it starts an unnamed
person. Tracks of one asset are placed one at a time, so a person seen in several shots of a new
video becomes one group. Every change of grouping in an organisation holds one transaction lock, so
two videos indexed at once cannot start two groups for one new face. A name lives on the person
row: it applies to every face grouped into that person, past and future, without re-indexing.
`regroup` clusters all faces again (Chinese Whispers) and keeps every name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from psycopg.rows import dict_row

from heimdex.vectorstore import search as search_sql
from heimdex.vectorstore.store import Conn

EMBEDDING_DIM = 128


@dataclass(frozen=True)
class FaceRow:
    asset_id: str | None  # None: an enrolment photo
    start: float
    end: float
    scene_lo: int | None
    scene_hi: int | None
    box: list[float]
    quality: float
    embedding: np.ndarray
    model: str
    thumbnail: str | None


class NoSuchPerson(LookupError):
    """No person with this id (or name) in the caller's organisation."""


class SamePerson(ValueError):
    """A person merged with itself."""


class NameConflict(ValueError):
    """An enrolment photo matches a person who already has another name."""


def lock_people(conn: Conn, org: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"people/{org}",))


def nearest(conn: Conn, org: str, vec: np.ndarray) -> tuple[int, float] | None:
    """(person, distance) of the face nearest to `vec` in the organisation, among grouped faces."""
    row = conn.execute(
        "SELECT person_id, embedding <-> %(v)s AS d FROM faces"
        " WHERE org_id = %(org)s AND person_id IS NOT NULL AND embedding IS NOT NULL"
        " ORDER BY embedding <-> %(v)s LIMIT 1",
        {"org": org, "v": np.asarray(vec, np.float32)},
    ).fetchone()
    return (int(row[0]), float(row[1])) if row else None


def new_person(conn: Conn, org: str, name: str | None = None) -> int:
    row = conn.execute(
        "INSERT INTO people (org_id, name) VALUES (%s, %s) RETURNING person_id", (org, name)
    ).fetchone()
    assert row is not None
    return int(row[0])


def insert_face(conn: Conn, org: str, face: FaceRow, person: int | None) -> int:
    row = conn.execute(
        """INSERT INTO faces (org_id, asset_id, start_s, end_s, scene_lo, scene_hi, box, quality,
                              embedding, model, thumbnail, person_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING face_id""",
        (
            org,
            face.asset_id,
            face.start,
            face.end,
            face.scene_lo,
            face.scene_hi,
            face.box,
            face.quality,
            np.asarray(face.embedding, np.float32),
            face.model,
            face.thumbnail,
            person,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def place(conn: Conn, org: str, face: FaceRow, threshold: float) -> int:
    """Insert one face, grouped: the nearest person within `threshold`, else a new unnamed one."""
    found = nearest(conn, org, face.embedding)
    person = found[0] if found is not None and found[1] <= threshold else new_person(conn, org)
    insert_face(conn, org, face, person)
    return person


def replace_faces(conn: Conn, org: str, asset_id: str, faces: list[FaceRow], threshold: float) -> list[int]:
    """The asset's faces, replaced and grouped (a re-index keeps names: they live on people).
    Returns the person of each face, in order."""
    lock_people(conn, org)
    conn.execute("DELETE FROM faces WHERE org_id = %s AND asset_id = %s", (org, asset_id))
    persons = [place(conn, org, face, threshold) for face in faces]
    tidy(conn, org)
    return persons


def tidy(conn: Conn, org: str) -> None:
    """Unnamed people without faces go; every person's cover is its best remaining face."""
    conn.execute(
        "DELETE FROM people p WHERE p.org_id = %(org)s AND p.name IS NULL"
        " AND NOT EXISTS (SELECT FROM faces f WHERE f.org_id = %(org)s AND f.person_id = p.person_id)",
        {"org": org},
    )
    conn.execute(
        """UPDATE people p SET cover_face = (
             SELECT f.face_id FROM faces f
             WHERE f.org_id = %(org)s AND f.person_id = p.person_id AND f.thumbnail IS NOT NULL
             ORDER BY f.quality DESC, f.face_id LIMIT 1)
           WHERE p.org_id = %(org)s""",
        {"org": org},
    )


PEOPLE_SQL = """
SELECT p.person_id AS id, p.name,
       count(f.face_id) FILTER (WHERE f.asset_id IS NOT NULL) AS faces,
       count(DISTINCT f.asset_id) AS assets,
       (SELECT c.thumbnail FROM faces c WHERE c.org_id = p.org_id AND c.face_id = p.cover_face) AS cover
FROM people p
LEFT JOIN faces f ON f.org_id = p.org_id AND f.person_id = p.person_id
WHERE p.org_id = %(org)s AND (%(id)s::bigint IS NULL OR p.person_id = %(id)s)
GROUP BY p.org_id, p.person_id
ORDER BY count(f.face_id) DESC, p.person_id
"""


def list_people(conn: Conn, org: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(PEOPLE_SQL, {"org": org, "id": None}).fetchall()


def get_person(conn: Conn, org: str, person: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(PEOPLE_SQL, {"org": org, "id": person}).fetchone()
    if row is None:
        raise NoSuchPerson(f"no person {person}")
    return row


def appearances(conn: Conn, org: str, person: int) -> list[dict[str, Any]]:
    """Where a person appears: asset, source, start, end, thumbnail (the face crop), by time."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT f.asset_id, a.source, f.start_s, f.end_s, f.thumbnail, f.box, f.quality
               FROM faces f JOIN assets a ON a.org_id = f.org_id AND a.asset_id = f.asset_id
               WHERE f.org_id = %s AND f.person_id = %s ORDER BY a.source, f.start_s""",
            (org, person),
        ).fetchall()


def resolve(conn: Conn, org: str, ref: str) -> list[int]:
    """The people a name or id names: an id, or every person with that name (case-insensitive)."""
    ref = ref.strip()
    if ref.isdigit():
        row = conn.execute(
            "SELECT person_id FROM people WHERE org_id = %s AND person_id = %s", (org, int(ref))
        ).fetchone()
        if row:
            return [int(row[0])]
    rows = conn.execute(
        "SELECT person_id FROM people WHERE org_id = %s AND lower(name) = lower(%s) ORDER BY person_id",
        (org, ref),
    ).fetchall()
    if not rows:
        raise NoSuchPerson(f"no person {ref!r}")
    return [int(r[0]) for r in rows]


def rename(conn: Conn, org: str, person: int, name: str | None) -> None:
    cur = conn.execute(
        "UPDATE people SET name = %s, updated_at = now() WHERE org_id = %s AND person_id = %s",
        (name, org, person),
    )
    if cur.rowcount == 0:
        raise NoSuchPerson(f"no person {person}")


def merge(conn: Conn, org: str, keep: int, other: int) -> None:
    """`other`'s faces join `keep`, which takes `other`'s name if it has none; `other` goes."""
    if keep == other:
        raise SamePerson("cannot merge a person with itself")
    lock_people(conn, org)
    rows = conn.execute(
        "SELECT person_id, name FROM people WHERE org_id = %s AND person_id = ANY(%s) FOR UPDATE",
        (org, [keep, other]),
    ).fetchall()
    names = {int(r[0]): r[1] for r in rows}
    for p in (keep, other):
        if p not in names:
            raise NoSuchPerson(f"no person {p}")
    conn.execute("UPDATE faces SET person_id = %s WHERE org_id = %s AND person_id = %s", (keep, org, other))
    conn.execute(
        "UPDATE people SET name = coalesce(name, %s), updated_at = now()"
        " WHERE org_id = %s AND person_id = %s",
        (names[other], org, keep),
    )
    conn.execute("DELETE FROM people WHERE org_id = %s AND person_id = %s", (org, other))
    tidy(conn, org)


def forget(conn: Conn, org: str, person: int) -> list[str]:
    """Erase a person: their faces (embeddings, boxes, crops' rows) and the person. Returns the
    face thumbnails to delete from storage. Future appearances start an unnamed person again."""
    lock_people(conn, org)
    found = conn.execute("SELECT 1 FROM people WHERE org_id = %s AND person_id = %s", (org, person))
    if not found.fetchone():
        raise NoSuchPerson(f"no person {person}")
    rows = conn.execute(
        "DELETE FROM faces WHERE org_id = %s AND person_id = %s RETURNING thumbnail", (org, person)
    ).fetchall()
    conn.execute("DELETE FROM people WHERE org_id = %s AND person_id = %s", (org, person))
    tidy(conn, org)
    return [r[0] for r in rows if r[0]]


def enrol(conn: Conn, org: str, name: str, embeddings: list[np.ndarray], threshold: float, model: str) -> int:
    """Name the group the photos match (or a new person), and keep the photos' embeddings so future
    faces match too. NameConflict when the match already has another name."""
    lock_people(conn, org)
    votes: Counter[int] = Counter()
    for vec in embeddings:
        found = nearest(conn, org, vec)
        if found is not None and found[1] <= threshold:
            votes[found[0]] += 1
    if votes:
        person = votes.most_common(1)[0][0]
        row = conn.execute(
            "SELECT name FROM people WHERE org_id = %s AND person_id = %s", (org, person)
        ).fetchone()
        current = row[0] if row else None
        if current is not None and current.lower() != name.lower():
            raise NameConflict(f"the photos match person {person}, named {current!r}")
        rename(conn, org, person, name)
    else:
        person = new_person(conn, org, name)
    for vec in embeddings:
        insert_face(conn, org, FaceRow(None, 0.0, 0.0, None, None, [], 0.0, vec, model, None), person)
    tidy(conn, org)
    return person


def regroup(conn: Conn, org: str, threshold: float) -> dict[str, int]:
    """Cluster every face of the organisation again (dlib's Chinese Whispers over the graph of
    faces within `threshold`). Names are never lost: a cluster holding faces of named people
    goes to the named person most of its faces had; faces of another named person in it stay with
    theirs; unnamed clusters reuse the unnamed person most of their faces had, or a new one."""
    import dlib

    lock_people(conn, org)
    rows = conn.execute(
        "SELECT f.face_id, f.person_id, f.embedding, p.name FROM faces f"
        " LEFT JOIN people p ON p.org_id = f.org_id AND p.person_id = f.person_id"
        " WHERE f.org_id = %s AND f.embedding IS NOT NULL ORDER BY f.face_id",
        (org,),
    ).fetchall()
    if not rows:
        return {"faces": 0, "people": 0, "moved": 0}
    vecs = [dlib.vector([float(x) for x in r[2].to_numpy()]) for r in rows]
    labels = dlib.chinese_whispers_clustering(vecs, threshold)
    clusters: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        clusters.setdefault(int(label), []).append(i)
    moved = 0
    used: set[int] = set()
    for members in clusters.values():
        named = Counter(int(rows[i][1]) for i in members if rows[i][3] is not None)
        unnamed = Counter(int(rows[i][1]) for i in members if rows[i][3] is None and rows[i][1] is not None)
        if named:
            target = named.most_common(1)[0][0]
        else:
            free = [p for p, _ in unnamed.most_common() if p not in used]
            target = free[0] if free else new_person(conn, org)
        used.add(target)
        for i in members:
            current = rows[i][1]
            if current is not None and rows[i][3] is not None and current != target:
                continue  # a face of another named person keeps its name
            if current != target:
                conn.execute(
                    "UPDATE faces SET person_id = %s WHERE org_id = %s AND face_id = %s",
                    (target, org, rows[i][0]),
                )
                moved += 1
    tidy(conn, org)
    people = conn.execute("SELECT count(*) FROM people WHERE org_id = %s", (org,)).fetchone()
    return {"faces": len(rows), "people": int(people[0]) if people else 0, "moved": moved}


# -- search -------------------------------------------------------------------------------------------

# Scenes of the caller's organisation where every group of people appears (a group: the ids one
# `person=` names; any of them counts). Driven from faces by person (faces_org_person). The search's
# filters (source prefix, asset, kind, language, asset dates: heimdex.vectorstore.search.scene_filters)
# apply where each query below reads the scene rows: after the grouping, so the faces of popular
# people cost no scene lookups of their own.
PERSON_SCENES = """
WITH wanted AS (SELECT * FROM unnest(%(pids)s::bigint[], %(groups)s::int[]) AS w(pid, grp)),
hits AS (
  SELECT f.asset_id, sc.idx, w.grp
  FROM faces f JOIN wanted w ON f.person_id = w.pid
  CROSS JOIN LATERAL generate_series(f.scene_lo, f.scene_hi) AS sc(idx)
  WHERE f.org_id = %(org)s AND f.person_id = ANY(%(pids)s) AND f.asset_id IS NOT NULL
),
cand AS (
  SELECT asset_id, idx FROM hits GROUP BY asset_id, idx HAVING count(DISTINCT grp) = %(n)s
)"""

_HIT_COLUMNS = (
    "a.source, s.asset_id, s.idx, s.start_s, s.end_s, s.transcript, s.ocr_text, s.thumbnail, s.lang"
)

# One person id and no query: the first k scenes in (asset, scene) order straight from the
# faces_org_person index (an incremental sort stops after k): fast however often the person appears.
APPEARANCES_ONE_SQL = f"""
WITH cand AS (
  SELECT DISTINCT f.asset_id, sc.idx
  FROM faces f CROSS JOIN LATERAL generate_series(f.scene_lo, f.scene_hi) AS sc(idx)
  JOIN scenes s ON s.org_id = %(org)s AND s.asset_id = f.asset_id AND s.idx = sc.idx
  WHERE f.org_id = %(org)s AND f.person_id = %(pid)s AND f.asset_id IS NOT NULL {{filters}}
  ORDER BY f.asset_id, sc.idx
  LIMIT %(k)s OFFSET %(offset)s
)
SELECT {_HIT_COLUMNS}, 1.0::float8 AS score
FROM cand c
JOIN scenes s ON s.org_id = %(org)s AND s.asset_id = c.asset_id AND s.idx = c.idx
JOIN assets a ON a.org_id = %(org)s AND a.asset_id = s.asset_id
ORDER BY s.asset_id, s.start_s
"""

APPEARANCES_SQL = (
    PERSON_SCENES
    + f"""
SELECT {_HIT_COLUMNS}, 1.0::float8 AS score
FROM cand c
JOIN scenes s ON s.org_id = %(org)s AND s.asset_id = c.asset_id AND s.idx = c.idx
JOIN assets a ON a.org_id = %(org)s AND a.asset_id = s.asset_id
WHERE true {{filters}}
ORDER BY s.asset_id, s.start_s
LIMIT %(k)s OFFSET %(offset)s
"""
)

# With a query: the candidate scenes ranked exactly (text and image distance, keyword rank with the
# query parsed in each scene's own language as heimdex_keyword_hits does, 009: once per language of
# the organisation, not per scene) and fused by reciprocal rank as heimdex.vectorstore.search does; a
# person's scenes are few next to an archive.
RANKED_SQL = (
    PERSON_SCENES
    + f""",
tq AS MATERIALIZED (
  SELECT coalesce(l.lang, '') AS lang, to_tsquery(public.heimdex_ts_config(l.lang), %(or_q)s) AS q
  FROM (SELECT NULL::text AS lang UNION SELECT lang FROM scene_languages WHERE org_id = %(org)s) l
),
scored AS MATERIALIZED (
  SELECT s.asset_id, s.idx,
    CASE WHEN s.text_model = %(text_model)s THEN s.text_vec <=> %(qt)s::halfvec END AS dt,
    CASE WHEN s.image_model = %(image_model)s THEN s.image_vec <=> %(qi)s::halfvec END AS di,
    CASE WHEN s.tsv @@ tq.q THEN ts_rank_cd(s.tsv, tq.q) ELSE 0 END AS kr
  FROM cand c
  JOIN scenes s ON s.org_id = %(org)s AND s.asset_id = c.asset_id AND s.idx = c.idx
  LEFT JOIN tq ON tq.lang = coalesce(s.lang, '')
  WHERE true {{filters}}
),
top AS MATERIALIZED (
  SELECT asset_id, idx,
    coalesce(1.0 / (%(rrf_k)s + CASE WHEN dt IS NOT NULL THEN rank() OVER (ORDER BY dt) END), 0)
    + coalesce(1.0 / (%(rrf_k)s + CASE WHEN di IS NOT NULL THEN rank() OVER (ORDER BY di) END), 0)
    + coalesce(1.0 / (%(rrf_k)s + CASE WHEN kr > 0 THEN rank() OVER (ORDER BY kr DESC) END), 0) AS score
  FROM scored
  ORDER BY score DESC, asset_id, idx
  LIMIT %(k)s OFFSET %(offset)s
)
SELECT {_HIT_COLUMNS}, f.score
FROM top f
JOIN scenes s ON s.org_id = %(org)s AND s.asset_id = f.asset_id AND s.idx = f.idx
JOIN assets a ON a.org_id = %(org)s AND a.asset_id = s.asset_id
ORDER BY f.score DESC, s.asset_id, s.idx
"""
)
_FILTERS = search_sql.scene_filters("s.")
APPEARANCES_ONE_SQL = APPEARANCES_ONE_SQL.replace("{filters}", _FILTERS)
APPEARANCES_SQL = APPEARANCES_SQL.replace("{filters}", _FILTERS)
RANKED_SQL = RANKED_SQL.replace("{filters}", _FILTERS)


@dataclass(frozen=True)
class Filters:
    """The search filters (heimdex.vectorstore.search.search's), applied to a person's scenes too."""

    source: str | None = None
    asset: str | None = None
    kind: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    lang: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "asset": self.asset,
            "kind": self.kind,
            "after": self.after,
            "before": self.before,
            "lang": self.lang,
        }


def _wanted(groups: list[list[int]]) -> dict[str, Any]:
    pids = [p for group in groups for p in group]
    return {
        "pids": pids,
        "groups": [g for g, group in enumerate(groups) for _ in group],
        "n": len(groups),
    }


def search_people(
    conn: Conn,
    org: str,
    groups: list[list[int]],
    *,
    k: int,
    offset: int = 0,
    filters: Filters = Filters(),
    query: str | None = None,
    or_q: str = "",
    text_vec: np.ndarray | None = None,
    text_model: str | None = None,
    image_vec: np.ndarray | None = None,
    image_model: str | None = None,
    rrf_k: int = 60,
) -> list[dict[str, Any]]:
    """Scenes where every group appears and the filters hold: with no query by asset and time (`k`
    of them after the first `offset`), else ranked by the query."""
    params: dict[str, Any] = {"org": org, "k": k, "offset": offset, **filters.params(), **_wanted(groups)}
    with conn.cursor(row_factory=dict_row) as cur:
        if not query:
            if len(params["pids"]) == 1:
                return cur.execute(APPEARANCES_ONE_SQL, params | {"pid": params["pids"][0]}).fetchall()
            return cur.execute(APPEARANCES_SQL, params).fetchall()
        params |= {
            "qt": text_vec,
            "qi": image_vec,
            "text_model": text_model,
            "image_model": image_model,
            "or_q": or_q,
            "rrf_k": rrf_k,
        }
        return cur.execute(RANKED_SQL, params).fetchall()


def people_in_scenes(
    conn: Conn, org: str, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The people seen in each scene (asset_id, idx): [{id, name}], by id."""
    if not keys:
        return {}
    rows = conn.execute(
        """SELECT DISTINCT k.asset_id, k.idx, p.person_id, p.name
           FROM unnest(%s::text[], %s::int[]) AS k(asset_id, idx)
           JOIN faces f ON f.org_id = %s AND f.asset_id = k.asset_id
             AND k.idx BETWEEN f.scene_lo AND f.scene_hi
           JOIN people p ON p.org_id = f.org_id AND p.person_id = f.person_id
           ORDER BY p.person_id""",
        ([a for a, _ in keys], [i for _, i in keys], org),
    ).fetchall()
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for asset_id, idx, pid, name in rows:
        out.setdefault((asset_id, int(idx)), []).append({"id": int(pid), "name": name})
    return out
