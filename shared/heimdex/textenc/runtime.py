"""Encode sentences with an exported model: tokenizers -> ONNX Runtime -> mean pooling -> L2 norm.

The same arithmetic as sentence-transformers' Transformer + Pooling(mean) + Normalize modules: token
vectors averaged over the attention mask (padding excluded), divided by max(norm, 1e-12). Nothing here
imports torch or transformers, so a query process starts in well under a second.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "heimdex-onnx.json"  # written last by the export: its presence marks a complete export
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


class ExportMissing(Exception):
    """The ONNX export of the text model is not there (set-up not run) or is incomplete."""


def read_manifest(folder: Path) -> dict[str, Any]:
    manifest = folder / MANIFEST
    if not manifest.is_file() or not (folder / MODEL_FILE).is_file():
        raise ExportMissing(
            f"no ONNX export of the text model at {folder}; make it with "
            "`heimdex export-text-model` (`make setup` and the image build run it)"
        )
    found: dict[str, Any] = json.loads(manifest.read_text())
    return found


class OnnxTextEncoder:
    """One exported model, loaded once; `encode` is safe to call from many threads.

    `encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)` takes the
    arguments Heimdex passes to a SentenceTransformer, so either can stand behind `Models`."""

    def __init__(self, folder: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = folder
        self.manifest = read_manifest(folder)
        self.max_length = int(self.manifest["max_seq_length"])
        self.dim = int(self.manifest["dim"])
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        tokenizer.enable_truncation(max_length=self.max_length)
        tokenizer.no_padding()  # padded here, per batch, to the batch's longest text
        self.tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(folder / MODEL_FILE), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}

    @property
    def max_seq_length(self) -> int:
        """Tokens a text is cut to (as SentenceTransformer.max_seq_length)."""
        return self.max_length

    def get_sentence_embedding_dimension(self) -> int:
        return self.dim

    def _batch(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
            types[row, :n] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        (hidden,) = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        pooled: np.ndarray = summed / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool = True,
        convert_to_numpy: bool = True,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray:
        """float32 vectors, one row per text, in the order given. Texts are batched by length (as
        sentence-transformers does), so a batch pads little."""
        del convert_to_numpy, show_progress_bar  # always numpy; never a progress bar
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            out[chosen] = self._batch([texts[i] for i in chosen])
        if normalize_embeddings:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.clip(norms, 1e-12, None)
        return out


class QueryCache:
    """A bounded LRU of query vectors: a repeated query (a user paging, a popular search) costs a
    dictionary look-up instead of a model run. Keys are the exact query text."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: str, vec: np.ndarray) -> None:
        if self.size <= 0:
            return
        vec.setflags(write=False)  # shared between requests: nobody may change it in place
        with self._lock:
            self._items[key] = vec
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
