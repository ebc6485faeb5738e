"""asr: faster-whisper with Silero VAD and word timestamps, guarded against hallucinations.

Whisper invents text in silence and loops on repeats. Guards, in order: VAD drops non-speech before
decoding; decoding does not condition on previous text (the usual source of loops); segments that
look like no speech (high no-speech probability with low log-probability) or are highly repetitive
(compression ratio) are dropped; a segment identical to the previous one is dropped; a word repeated
more than MAX_WORD_REPEATS times in a row is cut back.
"""

from __future__ import annotations

import logging
from typing import Any

import av
import numpy as np

from heimdex.core.context import StageContext
from heimdex.media.segments import PAD_S, in_segment, read_audio

log = logging.getLogger(__name__)

MAX_WORD_REPEATS = 3
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0
MAX_COMPRESSION_RATIO = 2.4


def _norm(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def clean_segments(
    segments: list[Any], offset: float = 0.0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Filter raw faster-whisper segments into (segments, words) plain dicts, times shifted by `offset`."""
    out_segments: list[dict[str, Any]] = []
    out_words: list[dict[str, Any]] = []
    previous_text = None
    for seg in segments:
        text = seg.text.strip()
        if not text:
            continue
        if seg.no_speech_prob > NO_SPEECH_PROB and seg.avg_logprob < LOW_LOGPROB:
            continue
        if seg.compression_ratio > MAX_COMPRESSION_RATIO:
            continue
        if previous_text is not None and _norm(text) == _norm(previous_text):
            continue
        previous_text = text
        words: list[dict[str, Any]] = []
        run_word, run_len = None, 0
        for w in seg.words or []:
            key = _norm(w.word)
            if not key:
                continue
            run_len = run_len + 1 if key == run_word else 1
            run_word = key
            if run_len > MAX_WORD_REPEATS:
                continue
            words.append(
                {
                    "w": w.word.strip(),
                    "s": round(float(w.start) + offset, 3),
                    "e": round(float(w.end) + offset, 3),
                    "p": round(float(w.probability), 3),
                }
            )
        if not words:
            continue
        out_words.extend(words)
        out_segments.append(
            {"start": words[0]["s"], "end": words[-1]["e"], "text": " ".join(w["w"] for w in words)}
        )
    return out_segments, out_words


def within(
    segments: list[dict[str, Any]], words: list[dict[str, Any]], start: float, end: float, *, last: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep the words whose midpoint lies in the segment (and the sentence segments left holding any)."""

    def keep(w: dict[str, Any]) -> bool:
        return in_segment((w["s"] + w["e"]) / 2, (start, end), last)

    kept_segments = []
    for seg in segments:
        inside = [w for w in words if seg["start"] <= w["s"] and w["e"] <= seg["end"] and keep(w)]
        if inside:
            kept_segments.append(
                {"start": inside[0]["s"], "end": inside[-1]["e"], "text": " ".join(w["w"] for w in inside)}
            )
    return kept_segments, [w for w in words if keep(w)]


def transcribe(ctx: StageContext, path: str) -> dict[str, Any]:
    """The whole file, or this task's segment of it (with PAD_S of context on both sides)."""
    if ctx.segment is None:
        return _transcribe(ctx, path, 0.0)
    start, end = ctx.segment
    window = max(0.0, start - PAD_S)
    audio = read_audio(path, window, end + PAD_S)
    doc = _transcribe(ctx, audio, window)
    doc["segments"], doc["words"] = within(doc["segments"], doc["words"], start, end, last=ctx.last_segment)
    return doc


def _transcribe(ctx: StageContext, audio: str | np.ndarray, offset: float) -> dict[str, Any]:
    s = ctx.settings
    model = ctx.models.whisper()
    segments, info = model.transcribe(
        audio,
        language=s.asr_language,
        beam_size=s.asr_beam_size,
        word_timestamps=True,
        vad_filter=True,
        vad_parameters={"min_silence_duration_ms": 500},
        condition_on_previous_text=False,
    )
    segs, words = clean_segments(list(segments), offset)
    return {
        "model": ctx.models.asr_name,
        "language": info.language,
        "segments": segs,
        "words": words,
        "speech_s": round(float(info.duration_after_vad), 3),
    }


def run(ctx: StageContext) -> dict[str, Any]:
    probe = ctx.read_output("probe")
    if probe.get("audio") is None:
        doc: dict[str, Any] = {
            "model": ctx.models.asr_name,
            "segments": [],
            "words": [],
            "note": "no audio stream",
        }
    else:
        with ctx.sources.local_path(ctx.ref.source) as path:
            try:
                doc = transcribe(ctx, str(path))
            except (av.FFmpegError, ValueError) as exc:
                # Broken audio must not sink the pictures: index without speech, say why.
                log.warning("audio of %s cannot be decoded: %s", ctx.ref.source, exc)
                doc = {
                    "model": ctx.models.asr_name,
                    "segments": [],
                    "words": [],
                    "note": f"audio could not be decoded: {exc}",
                }
    ctx.write_output("asr", doc)
    return doc
