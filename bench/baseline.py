"""The torch baseline, measured beside the current code in the same run: the package and functions as
they were before queries moved to ONNX (BASELINE_REF, default the commit before that change),
extracted once from git into .bench/baseline-<ref>/ and run with PYTHONPATH pointing there. Both
trees run in this virtualenv, on the same database and corpus, so a ratio holds on a noisy machine.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

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
