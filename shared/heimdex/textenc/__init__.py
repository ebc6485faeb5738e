"""Sentence vectors without torch: a sentence-transformers model exported once to ONNX (`export`,
run by set-up and the image build, needs torch) and encoded with ONNX Runtime and the `tokenizers`
library (`runtime`, needs neither torch nor transformers). Queries and scene texts both go through
`OnnxTextEncoder`; its vectors match sentence-transformers' to cosine >= 0.999 (tests/test_textenc.py).
"""

from heimdex.textenc.runtime import MANIFEST, ExportMissing, OnnxTextEncoder, QueryCache

__all__ = ["MANIFEST", "ExportMissing", "OnnxTextEncoder", "QueryCache"]
