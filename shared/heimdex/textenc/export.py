"""Export a loaded sentence-transformers model to an ONNX folder that `OnnxTextEncoder` reads.

Runs once, where torch is installed (set-up, the image build): `heimdex export-text-model`. The folder
holds `model.onnx` (the transformer, token vectors out), `tokenizer.json`, and the manifest, written
last. Before the manifest is written, the export is checked against the torch model on a few texts
(cosine >= 0.9999), so a bad export never looks complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from heimdex.textenc.runtime import MANIFEST, MODEL_FILE, TOKENIZER_FILE, OnnxTextEncoder

CHECK_TEXTS = [
    "the harbour fire after midnight",
    "Fire chief interview: crews reached the warehouse at 12:40, two engines and a ladder.",
    "how hot should the oven be",
    "x",
    "Bicycle bridge vote " * 40,  # longer than the model's window: truncation must agree
]
OPSET = 17


def _check_modules(model: Any) -> None:
    names = [type(m).__name__ for m in model]
    if names[:2] != ["Transformer", "Pooling"] or set(names[2:]) - {"Normalize"}:
        raise ValueError(f"only Transformer + mean Pooling (+ Normalize) models export; this is {names}")
    pooling = model[1]
    if getattr(pooling, "pooling_mode", "mean") not in ("mean", ("mean",)) and not getattr(
        pooling, "pooling_mode_mean_tokens", False
    ):
        raise ValueError("only mean pooling exports")


def expected_dim(model: Any) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def export(model: Any, source: Path, name: str, out: Path) -> Path:
    """Write `out` (replaced if present) from a loaded SentenceTransformer read from `source`."""
    import torch

    _check_modules(model)
    transformer = model[0].auto_model.eval()
    transformer.set_attn_implementation("eager")  # plain ops: traced without shape-bound branches
    tokenizer_file = source / TOKENIZER_FILE
    if not tokenizer_file.is_file():
        raise ValueError(f"{source} has no {TOKENIZER_FILE} (a fast tokenizer is needed)")

    class TokenVectors(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        ids = torch.ones((2, 8), dtype=torch.long)
        axes = {0: "batch", 1: "tokens"}
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shape arithmetic; the check below judges
            torch.onnx.export(
                TokenVectors(transformer),
                (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                str(work / MODEL_FILE),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["token_vectors"],
                dynamic_axes={n: axes for n in ("input_ids", "attention_mask", "token_type_ids")}
                | {"token_vectors": axes},
                opset_version=OPSET,
                dynamo=False,
            )
        shutil.copyfile(tokenizer_file, work / TOKENIZER_FILE)
        manifest = {
            "name": name,
            "source": str(source),
            "max_seq_length": int(model.max_seq_length),
            "dim": int(expected_dim(model)),
            "pooling": "mean",
            "normalize": True,
            "opset": OPSET,
            "torch": torch.__version__,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1))
        expected = model.encode(CHECK_TEXTS, normalize_embeddings=True, convert_to_numpy=True)
        got = OnnxTextEncoder(work).encode(CHECK_TEXTS)
        worst = float(np.min(np.sum(expected * got, axis=1)))
        if worst < 0.9999:
            raise RuntimeError(f"the ONNX export disagrees with the torch model (cosine {worst:.6f})")
        if out.exists():
            shutil.rmtree(out)
        work.chmod(0o755)  # mkdtemp made it private; services may run as another user (the image)
        work.rename(out)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
