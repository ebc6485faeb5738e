"""`heimdex backup FILE` and `heimdex restore FILE`: the embedded default's whole state in one file.

A backup is a tar (gzip-compressed when FILE ends in .gz or .tgz) holding, in this order:

    manifest.json   format and Heimdex versions, schema migration, vector widths, models, counts,
                    created_at, and the dump's size and SHA-256
    database.dump   pg_dump's custom format of the index database: schema, rows, indexes, grants,
                    row-level security, made by the bundled pg_dump of the server's own version
    jwt_secret      the home's API-token secret, when one was created (issued tokens stay valid)
    derived/...     stage outputs, thumbnails and sidecars of every asset in the dump

Only the embedded default is covered (a local PostgreSQL under HEIMDEX_HOME, derived files on
disk). The cloud keeps its state in Cloud SQL (automated backups, point-in-time recovery) and a
versioned derived bucket: terraform/modules/cloudsql and terraform/modules/storage.

Consistency
-----------
The dump is one transaction snapshot, and the files must match it: every scene a restored home
serves has its thumbnail, every ready asset its sidecar, and each sidecar is the one written with
the rows the dump holds. Two properties of the writers make that cheap to get:

1. A file is complete on disk before any row that names it commits. Stages write their outputs
   (thumbnails included) before the job records them done, and the index stage writes the sidecar
   inside the transaction that stores the asset's scenes. `LocalDerivedStore.write_bytes` replaces
   files atomically (a temporary file, then a rename), never edits one in place, and the embedded
   mode never deletes one. Keys are fixed per (organisation, asset) and an asset id hashes the
   source's version, so a file is rewritten only when the same asset is processed again
   (`--force`, a retry), with the same names.
2. The index stage's transaction takes a shared advisory lock before it writes the sidecar
   (`db.backup_fence`); a backup takes that lock exclusively.

A backup (a) takes the exclusive lock, which waits for index commits in flight and holds back new
ones; (b) opens a repeatable-read transaction and exports its snapshot; (c) hard-links (or, where
links fail, copies) the derived files of every asset in that snapshot into a staging folder inside
the home: as writers only ever rename over files, a link freezes a file's content as of now;
(d) releases the lock, so indexing goes on, and runs pg_dump on the exported snapshot. By 1, every
file that a row in the snapshot names existed before the snapshot and still exists at (c); by 2,
no sidecar changed between (b) and (c). A backup taken while `heimdex index` runs therefore holds
each asset either as it was before that run's commit or after it, whole; assets still processing
are in it as `processing` (a later `heimdex index` redoes them). The lock is held for the snapshot
and the linking (milliseconds per thousand files), not for the dump or the archive. A file that a
row names but that is absent (removed by hand) is listed in the manifest's `missing_files` and
reported, never silently dropped.

Restore goes into an empty home (with --force, one whose database and derived files it replaces):
it checks the manifest first (format, vector widths against the configured ones, schema not newer
than this version's), then unpacks the files, initialises a fresh PostgreSQL cluster, creates the
cluster-level role the dump does not carry (`heimdex_app`, as the first migration does), runs
pg_restore in one transaction, applies this version's migrations (a backup of an older schema is
upgraded), and checks that the counts match the manifest, that row-level security is forced, and
that every file a row names is present. A restore that fails into a home that was empty leaves it
empty again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import IsolationLevel
from tqdm import tqdm

from heimdex import __version__
from heimdex.config import Settings
from heimdex.vectorstore.db import (
    BACKUP_LOCK,
    Database,
    ensure_app_role,
    migrations,
    pg_bin,
    start_embedded,
    stop_embedded,
)

FORMAT = "heimdex-backup"
FORMAT_VERSION = 1
MANIFEST, DUMP, SECRET, DERIVED = "manifest.json", "database.dump", "jwt_secret", "derived"
TABLES = ("assets", "scenes", "jobs")
# Scenes' thumbnails and assets' sidecars: the files that rows name.
REFERENCED = (
    "SELECT sidecar FROM assets WHERE sidecar IS NOT NULL"
    " UNION SELECT thumbnail FROM scenes WHERE thumbnail IS NOT NULL"
)

Say = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore that failed; the message is one line for the user."""

    exit_code = 2


class Refused(BackupError):
    """Asked for something this cannot do (not a backup, a home that is not empty, ...): nothing done."""

    exit_code = 64


def _silent(_: str) -> None:
    pass


def _embedded_only(settings: Settings) -> None:
    if settings.database_url:
        raise Refused(
            "backup and restore cover the embedded database, but HEIMDEX_DATABASE_URL is set;"
            " back that server up with its own tools (Cloud SQL: automated backups, point-in-time recovery)"
        )
    if settings.derived_bucket:
        raise Refused(
            "backup and restore cover local derived files, but HEIMDEX_DERIVED_BUCKET is set;"
            " that bucket is versioned (terraform/modules/storage)"
        )


def _run(args: list[str], what: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise BackupError(f"{what} failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _bar(total: int, desc: str) -> Any:
    # On a terminal only, like `heimdex index`'s; result lines go to stdout.
    return tqdm(total=total, unit="file", desc=desc, file=sys.stderr, dynamic_ncols=True, disable=None)


# -- backup -------------------------------------------------------------------------------------------


def _asset_files(home: Path, org_id: str, asset_id: str) -> Iterable[Path]:
    """The derived files of one asset: its stage outputs and thumbnails, and its sidecar."""
    derived = (home / DERIVED).resolve()
    folder = (derived / org_id / asset_id).resolve()
    sidecar = (derived / org_id / "sidecars" / f"{asset_id}.json").resolve()
    if not folder.is_relative_to(derived) or not sidecar.is_relative_to(derived):
        return  # not a name the stores could have written
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.startswith(".tmp-"):
                yield path
    if sidecar.is_file():
        yield sidecar


def _freeze(home: Path, assets: list[tuple[str, str]], staging: Path) -> dict[str, int]:
    """Hard-link (else copy) the assets' derived files under `staging`: key -> size in bytes."""
    root = home.resolve()
    frozen: dict[str, int] = {}
    for org_id, asset_id in assets:
        for path in _asset_files(root, org_id, asset_id):
            key = path.relative_to(root).as_posix()
            dest = staging / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, dest)
            except FileNotFoundError:
                continue  # gone since it was listed: no row of the snapshot can name it (see above)
            except OSError:
                shutil.copy2(path, dest)  # a file system without hard links: copy, still under the lock
            frozen[key] = dest.stat().st_size
    return frozen


def _describe(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """What the snapshot holds, for the manifest (read inside the exported snapshot)."""

    def one(query: str) -> Any:
        row = conn.execute(query).fetchone()  # trusted, constant SQL
        return row[0] if row else None

    dims = dict(
        conn.execute(
            "SELECT attname, atttypmod FROM pg_attribute WHERE attrelid = 'scenes'::regclass"
            " AND attname IN ('text_vec', 'image_vec')"
        ).fetchall()
    )
    models = {
        kind: [
            r[0]
            for r in conn.execute(  # constant column names
                f"SELECT DISTINCT {kind}_model FROM assets WHERE {kind}_model IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]
        for kind in ("text", "image")
    }
    return {
        "postgresql": one("SHOW server_version"),
        "schema_version": one("SELECT coalesce(max(version), 0) FROM schema_migrations"),
        "vector_dims": {"text": dims.get("text_vec"), "image": dims.get("image_vec")},
        "models": models,
        "counts": {
            "organisations": one("SELECT count(DISTINCT org_id) FROM assets"),
            "assets": one("SELECT count(*) FROM assets"),
            "ready": one("SELECT count(*) FROM assets WHERE status = 'ready'"),
            "scenes": one("SELECT count(*) FROM scenes"),
            "jobs": one("SELECT count(*) FROM jobs"),
        },
    }


def backup(settings: Settings, target: Path, say: Say = _silent) -> dict[str, Any]:
    """Write the home's database and derived files to `target`; returns the manifest."""
    _embedded_only(settings)
    home = settings.home.absolute()
    if not (settings.pgdata / "PG_VERSION").is_file():
        raise Refused(f"nothing to back up: {home} holds no Heimdex database")
    target = Path(target).absolute()
    if target.is_dir() or not target.parent.is_dir():
        raise Refused(f"cannot write {target}: give a file name in an existing folder")
    started = time.perf_counter()
    url = start_embedded(settings)
    staging = Path(tempfile.mkdtemp(prefix=".backup-", dir=home))
    try:
        with psycopg.connect(url, autocommit=True) as lock_conn, psycopg.connect(url) as snap:
            snap.isolation_level = IsolationLevel.REPEATABLE_READ
            snap.read_only = True
            waited = time.perf_counter()
            lock_conn.execute("SELECT pg_advisory_lock(%s)", (BACKUP_LOCK,))
            locked = time.perf_counter()
            try:
                row = snap.execute("SELECT pg_export_snapshot()").fetchone()
                assert row is not None
                snapshot_id = row[0]
                rows = snap.execute("SELECT org_id, asset_id FROM assets").fetchall()
                assets = [(r[0], r[1]) for r in rows]
                frozen = _freeze(home, assets, staging)
            finally:
                lock_conn.execute("SELECT pg_advisory_unlock(%s)", (BACKUP_LOCK,))
            held = time.perf_counter() - locked
            manifest = _describe(snap)
            missing = sorted(r[0] for r in snap.execute(REFERENCED).fetchall() if r[0] not in frozen)
            counts = manifest["counts"]
            say(
                f"snapshot: {counts['assets']} assets, {counts['scenes']} scenes, {len(frozen)} derived files"
                f" ({_size(sum(frozen.values()))}); index commits held {held:.2f}s"
                f" (waited {locked - waited:.2f}s for those in flight)"
            )
            if missing:
                say(f"warning: {len(missing)} files named by the database are missing, e.g. {missing[0]}")
            dump = staging / DUMP
            say("dumping the database (pg_dump)")
            _run(
                [
                    str(pg_bin("pg_dump")),
                    "--format=custom",
                    f"--snapshot={snapshot_id}",
                    "--no-password",
                    f"--file={dump}",
                    f"--dbname={url}",
                ],
                "pg_dump",
            )
            snap.rollback()
        secret = home / SECRET
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "heimdex_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **manifest,
            "counts": {**counts, "derived_files": len(frozen), "derived_bytes": sum(frozen.values())},
            "missing_files": missing,
            "dump": {"name": DUMP, "bytes": dump.stat().st_size, "sha256": _sha256(dump)},
            "jwt_secret": secret.is_file(),
        }
        _write_archive(target, manifest, dump, secret, staging, sorted(frozen))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest["seconds"] = round(time.perf_counter() - started, 2)
    manifest["file_bytes"] = target.stat().st_size
    return manifest


def _write_archive(
    target: Path, manifest: dict[str, Any], dump: Path, secret: Path, staging: Path, keys: list[str]
) -> None:
    """The tar, written beside `target` and renamed over it once complete (mode 0600: it holds the
    secret and every organisation's data)."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            gz = target.name.endswith((".gz", ".tgz"))
            with (
                tarfile.open(fileobj=fh, mode="w:gz", format=tarfile.PAX_FORMAT)
                if gz
                else tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT)
            ) as tar:
                data = json.dumps(manifest, indent=1).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
                tar.add(dump, arcname=DUMP)
                if secret.is_file():
                    tar.add(secret, arcname=SECRET)
                with _bar(len(keys), "archiving") as bar:
                    for key in keys:
                        tar.add(staging / key, arcname=key)
                        bar.update(1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- restore ------------------------------------------------------------------------------------------


def read_manifest(source: Path) -> dict[str, Any]:
    """The manifest of a backup file; Refused for anything that is not one this version reads."""
    source = Path(source)
    if not source.is_file():
        raise Refused(f"no such backup file: {source}")
    try:
        with tarfile.open(source, "r:*") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile() or first.size > 1 << 24:
                raise Refused(f"{source} is not a Heimdex backup (no manifest.json first)")
            fh = tar.extractfile(first)
            assert fh is not None
            doc = json.loads(fh.read())
    except tarfile.ReadError as exc:
        raise Refused(f"{source} is not a Heimdex backup (not a tar archive)") from exc
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        reason = (str(exc).splitlines() or [""])[0]
        raise Refused(f"{source} is not a Heimdex backup ({type(exc).__name__}: {reason})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise Refused(f"{source} is not a Heimdex backup (its manifest is not a {FORMAT} manifest)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise Refused(
            f"{source} is a Heimdex backup of format {doc.get('format_version')};"
            f" Heimdex {__version__} reads format {FORMAT_VERSION}"
        )
    return doc


def _check_compatible(manifest: dict[str, Any], settings: Settings) -> None:
    dims = manifest.get("vector_dims", {})
    for kind, want in (("text", settings.text_dim), ("image", settings.image_dim)):
        if dims.get(kind) != want:
            raise Refused(
                f"the backup holds {dims.get(kind)}-d {kind} vectors but HEIMDEX_{kind.upper()}_DIM"
                f" is {want}; restore with the model configuration the backup was made with"
            )
    known = len(migrations(settings))
    if int(manifest.get("schema_version", 0)) > known:
        raise Refused(
            f"the backup's schema (migration {manifest['schema_version']}) is newer than Heimdex"
            f" {__version__} knows ({known}); restore it with the version that made it"
            f" ({manifest.get('heimdex_version')})"
        )


def _clear(settings: Settings) -> None:
    """Remove what a restore writes: the database (its server stopped first), derived files, secret."""
    home = settings.home
    stop_embedded(settings.pgdata)
    for name in ("pg", DERIVED):
        shutil.rmtree(home / name, ignore_errors=True)
    (home / SECRET).unlink(missing_ok=True)
    for leftover in home.glob(".restore-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def restore(settings: Settings, source: Path, *, force: bool = False, say: Say = _silent) -> dict[str, Any]:
    """Restore a backup into the (empty) home; returns the manifest with what was restored."""
    _embedded_only(settings)
    source = Path(source).absolute()
    manifest = read_manifest(source)
    _check_compatible(manifest, settings)
    home = settings.home.absolute()
    if home.exists() and not home.is_dir():
        raise Refused(f"HEIMDEX_HOME {home} is not a folder")
    present = sorted(p.name for p in home.iterdir()) if home.is_dir() else []
    if present and not force:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise Refused(
            f"HEIMDEX_HOME {home} is not empty ({shown}); restore into an empty home,"
            " or pass --force to replace its database and derived files"
        )
    started = time.perf_counter()
    if present:
        say(f"replacing the database and derived files in {home}")
        _clear(settings)
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=home))
    try:
        files = _unpack(source, manifest, home, staging)
        say(f"unpacked {files} derived files; restoring the database (pg_restore)")
        url = start_embedded(settings)
        with psycopg.connect(url, autocommit=True) as conn:
            ensure_app_role(conn)
        _run(
            [
                str(pg_bin("pg_restore")),
                "--exit-on-error",
                "--single-transaction",
                "--no-owner",
                "--no-password",
                f"--dbname={url}",
                str(staging / DUMP),
            ],
            "pg_restore",
        )
        db = Database(settings, url=url)  # this version's migrations and its vector-width checks
        db.close()
        _verify(url, manifest, home)
    except BaseException:
        # Leave no half-restored home behind: a home that was empty is empty again.
        _clear(settings)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest["seconds"] = round(time.perf_counter() - started, 2)
    return manifest


def _unpack(source: Path, manifest: dict[str, Any], home: Path, staging: Path) -> int:
    """Derived files into the home, the secret beside them, the dump into `staging` (checked)."""
    files = 0
    counts = manifest.get("counts", {})
    try:
        bar = _bar(int(counts.get("derived_files", 0)), "unpacking")
        with tarfile.open(source, "r:*") as tar, bar:
            for member in tar:
                name = member.name
                if member.isdir() or name == MANIFEST:
                    continue
                if not member.isfile():
                    raise BackupError(f"{source}: unexpected member {name!r} (not a regular file)")
                if name in (DUMP, SECRET):
                    tar.extract(member, staging, filter="data")
                elif name.startswith(f"{DERIVED}/"):
                    tar.extract(member, home, filter="data")
                    files += 1
                    bar.update(1)
                else:
                    raise BackupError(f"{source}: unexpected member {name!r}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        reason = (str(exc).splitlines() or [""])[0]
        raise BackupError(f"{source} is damaged: {type(exc).__name__}: {reason}") from exc
    dump = staging / DUMP
    if not dump.is_file() or _sha256(dump) != manifest.get("dump", {}).get("sha256"):
        raise BackupError(f"{source} is damaged: the database dump is missing or fails its checksum")
    if files != counts.get("derived_files"):
        raise BackupError(
            f"{source} is damaged: {files} derived files, the manifest lists {counts.get('derived_files')}"
        )
    if (staging / SECRET).is_file():
        os.replace(staging / SECRET, home / SECRET)
        (home / SECRET).chmod(0o600)
    return files


def _verify(url: str, manifest: dict[str, Any], home: Path) -> None:
    """The restored database holds what the manifest says, keeps row-level security, and every file
    a row names is on disk."""
    with psycopg.connect(url) as conn:
        for table in TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # constant table names
            want = manifest["counts"].get(table)
            if row is None or row[0] != want:
                got = row[0] if row else None
                raise BackupError(f"restored {table}: {got} rows, the backup holds {want}")
        forced = {
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relname = ANY(%s)"
                " AND relrowsecurity AND relforcerowsecurity AND relnamespace = 'public'::regnamespace",
                (list(TABLES),),
            ).fetchall()
        }
        if forced != set(TABLES):
            lacking = sorted(set(TABLES) - forced)
            raise BackupError(f"restored tables without forced row-level security: {lacking}")
        missing = [r[0] for r in conn.execute(REFERENCED).fetchall() if not (home / r[0]).is_file()]
    if len(missing) > len(manifest.get("missing_files", [])):
        raise BackupError(
            f"{len(missing)} files named by the restored database are missing, e.g. {missing[0]}"
        )
