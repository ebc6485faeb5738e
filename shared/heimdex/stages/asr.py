"""asr: faster-whisper with Silero VAD and word timestamps, guarded against hallucinations.

Whisper invents text in silence and loops on repeats. Guards, in order: VAD drops non-speech before
decoding; decoding does not condition on previous text (the usual source of loops); segments that
look like no speech (high no-speech probability with low log-probability) or are highly repetitive
(compression ratio) are dropped; a segment identical to the previous one is dropped; a word repeated
more than MAX_WORD_REPEATS times in a row is cut back.

Languages: an English-only model (the default tiny.en) or a configured HEIMDEX_ASR_LANGUAGE decodes
the file in one call, as always. A multilingual model finds each speech segment's language first
(heimdex.media.languages) and decodes each run of one language in it, so a file that switches
language mid-way is transcribed in each; `speech` lists the detected segments.
"""

from __future__ import annotations

import logging
from typing import Any

import av
import numpy as np

from heimdex.core.context import StageContext
from heimdex.media import languages
from heimdex.media.segments import PAD_S, RATE, in_segment, read_audio

log = logging.getLogger(__name__)

MAX_WORD_REPEATS = 3
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0
MAX_COMPRESSION_RATIO = 2.4
ATTACHED_SIGNS = frozenset("%‰°€$£¥")


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
                # A sign Whisper gives as a word of its own ("14 %"): part of the word before it, not
                # dropped (a transcript "rose 14 this week" had lost "percent" for search).
                sign = w.word.strip()
                if sign in ATTACHED_SIGNS and words:
                    words[-1]["w"] += sign
                    words[-1]["e"] = round(float(w.end) + offset, 3)
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
                {k: v for k, v in seg.items() if k in ("lang", "lang_p")}
                | {"start": inside[0]["s"], "end": inside[-1]["e"], "text": " ".join(w["w"] for w in inside)}
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
    if "speech" in doc:  # detected speech segments: each kept by the segment that holds its midpoint
        doc["speech"] = [
            u
            for u in doc["speech"]
            if in_segment((u["start"] + u["end"]) / 2, (start, end), ctx.last_segment)
        ]
    return doc


# Whisper falls back to sampling (temperatures 0.2-1.0) where a beam-search window fails its checks,
# as speech in a language the model does not know often does: a fixed seed before each decode makes
# the transcript of a segment the same on every run (and the language flag drawn from it).
DECODE_SEED = 0


def _decode(ctx: StageContext, model: Any, audio: str | np.ndarray, language: str) -> tuple[list[Any], Any]:
    import ctranslate2

    s = ctx.settings
    ctranslate2.set_random_seed(DECODE_SEED)
    segments, info = model.transcribe(
        audio,
        language=language,
        beam_size=s.asr_beam_size,
        word_timestamps=True,
        vad_filter=True,
        vad_parameters={"min_silence_duration_ms": 500},
        condition_on_previous_text=False,
    )
    return list(segments), info


def _transcribe(ctx: StageContext, audio: str | np.ndarray, offset: float) -> dict[str, Any]:
    model = ctx.models.whisper()
    if model.model.is_multilingual and not ctx.settings.asr_language:
        return _transcribe_languages(ctx, model, audio, offset)
    # One language for the whole file: the English-only default, or HEIMDEX_ASR_LANGUAGE.
    raw, info = _decode(ctx, model, audio, ctx.settings.asr_language or "en")
    segs, words = clean_segments(raw, offset)
    for seg in segs:
        seg["lang"] = info.language
    doc = {
        "model": ctx.models.asr_name,
        "language": info.language,
        "multilingual": bool(model.model.is_multilingual),
        "segments": segs,
        "words": words,
        "speech_s": round(float(info.duration_after_vad), 3),
    }
    return doc


def _detect(model: Any, samples: np.ndarray) -> dict[str, float]:
    """Language probabilities of one speech segment, from the encoder run over the segment alone.

    faster-whisper's detect_language pads every input to Whisper's 30-second window, so a 4-second
    sentence costs a full encoder pass; CTranslate2 encodes the unpadded features too, at 10-15x less
    CPU, with the same language chosen (after smoothing) for every segment of the test clips and of the
    benchmark clip (measured when this was written; BENCHMARKS.md, "Speech in other languages").
    """
    features = model.feature_extractor(samples)[:, : model.feature_extractor.nb_max_frames]
    encoded = model.encode(features)
    return {token[2:-2]: float(p) for token, p in model.model.detect_language(encoded)[0]}


def _transcribe_languages(
    ctx: StageContext, model: Any, audio: str | np.ndarray, offset: float
) -> dict[str, Any]:
    """Each speech segment's language detected (and smoothed, heimdex.media.languages); each run of one
    language transcribed in it, English runs by the English-only model when routing is on."""
    from faster_whisper.audio import decode_audio
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    samples = decode_audio(audio, sampling_rate=RATE) if isinstance(audio, str) else audio
    chunks = get_speech_timestamps(samples, VadOptions(min_silence_duration_ms=500))
    units = [languages.Unit(a, b, _detect(model, samples[a:b])) for a, b in languages.speech_units(chunks)]
    languages.smooth(units)
    segs: list[dict[str, Any]] = []
    words: list[dict[str, Any]] = []
    speech_s = 0.0
    pad = int(0.2 * RATE)  # VAD trims close to the voice; keep a little of the edges
    for run in languages.runs(units):
        lang = run[0].lang
        routed = lang == "en" and ctx.settings.asr_route_english
        decoder = ctx.models.whisper_english() if routed else model
        a, b = max(0, run[0].start - pad), min(len(samples), run[-1].end + pad)
        raw, info = _decode(ctx, decoder, samples[a:b], lang)
        run_segs, run_words = clean_segments(raw, offset + a / RATE)
        for seg in run_segs:
            mid = (seg["start"] + seg["end"]) / 2 - offset
            unit = min(run, key=lambda u: abs((u.start + u.end) / 2 / RATE - mid))
            seg["lang"], seg["lang_p"] = lang, unit.p
        segs.extend(run_segs)
        words.extend(run_words)
        speech_s += float(info.duration_after_vad)
    log.info(
        "speech segments %d, languages %s",
        len(units),
        ",".join(f"{u.lang}:{u.p:.2f}" for u in units),
    )
    return {
        "model": ctx.models.asr_name,
        "language": languages.dominant(segs),
        "speech": [
            {
                "start": round(offset + u.start / RATE, 3),
                "end": round(offset + u.end / RATE, 3),
                "lang": u.lang,
                "p": u.p,
            }
            for u in units
        ],
        "multilingual": True,
        "segments": segs,
        "words": words,
        "speech_s": round(speech_s, 3),
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
