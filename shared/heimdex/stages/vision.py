"""vision: open_clip image vectors for every keyframe, batched; skipped when no weights are configured."""

from __future__ import annotations

import io
from typing import Any

from heimdex.core.context import StageContext
from heimdex.domain import StageSkipped

BATCH = 16


def run(ctx: StageContext) -> dict[str, Any]:
    clip = ctx.models.clip()
    if clip is None:
        raise StageSkipped(
            "no image model configured (HEIMDEX_VISION_WEIGHTS); image vectors are not indexed"
        )
    import torch
    from PIL import Image

    keyframes = ctx.read_output("shots")["keyframes"]
    vectors: list[list[float]] = []
    for i in range(0, len(keyframes), BATCH):
        batch = [
            clip.preprocess(Image.open(io.BytesIO(ctx.derived.read_bytes(kf["thumb"]))).convert("RGB"))
            for kf in keyframes[i : i + BATCH]
        ]
        with torch.inference_mode():
            emb = clip.model.encode_image(torch.stack(batch))
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        vectors.extend([round(float(x), 6) for x in row] for row in emb.tolist())
    doc = {"model": clip.name, "dim": clip.dim, "vectors": vectors}
    ctx.write_output("vision", doc)
    return doc
