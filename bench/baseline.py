"""The torch baseline, measured beside the current code in the same run: the package and functions as
they were before queries moved to ONNX (BASELINE_REF, default the commit before that change),
extracted once from git into .bench/baseline-<ref>/ and run with PYTHONPATH pointing there. Both
trees run in this virtualenv, on the same server and corpus, so a ratio holds on a noisy machine; the
baseline on a database of its own, migrated by its own code (`database`).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
BASELINE_REF = os.environ.get("BASELINE_REF", "ae9cd2a")  # main before issue 17: torch encodes queries


def tree(variant: str) -> Path:
    """Repository root of a variant: `onnx` (this checkout) or `torch` (the baseline commit)."""
    if variant == "onnx":
        return ROOT
    out = ROOT / ".bench" / f"baseline-{BASELINE_REF}"
    if not (out / "shared" / "heimdex" / "__init__.py").is_file():
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", BASELINE_REF, "shared", "functions"],
            capture_output=True,
            check=True,
        ).stdout
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(out, filter="data")
    return out


def env_for(variant: str, base: dict[str, str]) -> dict[str, str]:
    """`base` with PYTHONPATH set to the variant's package (and the repository, for `bench`)."""
    return {**base, "PYTHONPATH": f"{tree(variant) / 'shared'}{os.pathsep}{ROOT}"}


def database(owner_url: str, app_url: str, variant: str, env: dict[str, str]) -> tuple[str, str]:
    """(owner URL, application URL) of the database a variant runs on. This checkout uses the given
    database; the baseline gets one of its own on the same server, migrated by the baseline's code
    (the baseline's queries do not run on a schema migrated past it)."""
    if variant == "onnx":
        return owner_url, app_url
    name = f"heimdex_{variant}"
    with psycopg.connect(owner_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    variant_owner = make_conninfo(owner_url, dbname=name)
    subprocess.run(  # the baseline's migrations, in a process of its own
        [
            sys.executable,
            "-c",
            "from heimdex.config import Settings; from heimdex.vectorstore.db import Database;"
            " Database(Settings()).close()",
        ],
        env=env_for(variant, {**env, "HEIMDEX_DATABASE_URL": variant_owner}),
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    return variant_owner, make_conninfo(app_url, dbname=name)
