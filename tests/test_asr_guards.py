"""Hallucination guards on faster-whisper output (segment objects as faster-whisper returns them)."""

from __future__ import annotations

from faster_whisper.transcribe import Segment, Word

from heimdex.stages.asr import clean_segments


def seg(
    text: str, start: float, *, no_speech: float = 0.01, logprob: float = -0.2, ratio: float = 1.2
) -> Segment:
    tokens = text.split()
    step = 0.4
    words = [Word(start + i * step, start + (i + 1) * step, " " + t, 0.9) for i, t in enumerate(tokens)]
    return Segment(
        id=0,
        seek=0,
        start=start,
        end=start + step * len(tokens),
        text=" " + text,
        tokens=[],
        avg_logprob=logprob,
        compression_ratio=ratio,
        no_speech_prob=no_speech,
        words=words,
        temperature=0.0,
    )


def test_keeps_normal_speech_with_word_times() -> None:
    segments, words = clean_segments([seg("the tide came in", 2.0)])
    assert segments == [{"start": 2.0, "end": 3.6, "text": "the tide came in"}]
    assert [x["w"] for x in words] == ["the", "tide", "came", "in"]


def test_drops_silence_hallucination_and_loops() -> None:
    segments, _ = clean_segments(
        [
            seg("thank you for watching", 0.0, no_speech=0.9, logprob=-1.5),  # invented in silence
            seg("go go go go go go go go", 5.0, ratio=3.1),  # compression ratio says loop
            seg("the boat left", 10.0),
            seg("The boat left.", 12.0),  # verbatim repeat of the previous segment
        ]
    )
    assert [s["text"] for s in segments] == ["the boat left"]


def test_cuts_runs_of_one_word() -> None:
    _, words = clean_segments([seg("no no no no no no stop", 0.0)])
    assert [x["w"] for x in words] == ["no", "no", "no", "stop"]


def test_a_sign_given_as_a_word_stays_with_its_number() -> None:
    """Whisper writes "14 %" as two words; the sign has no letters or digits but is not noise."""
    segments, words = clean_segments([seg("prices rose 14 % this week", 1.0)])
    assert [x["w"] for x in words] == ["prices", "rose", "14%", "this", "week"]
    assert words[2]["s"] == 1.8 and words[2]["e"] == 2.6  # "14" from its start to the sign's end
    assert segments[0]["text"] == "prices rose 14% this week"
    _, words = clean_segments([seg("% - prices", 0.0)])  # nothing before it: still not a word
    assert [x["w"] for x in words] == ["prices"]
