"""A bad-input corpus, generated: broken files, odd-but-valid media and hostile file names.

`make_corpus(folder, work)` writes every kind into `folder` (sources and scratch go to `work`) and
returns what each should come to: `ready` (valid media, however odd, is indexed) or `failed` with
words the reason must contain. Everything is small (a few seconds, low resolution) except where
size is the point (a 4096x2160 clip, a three-minute silent one), so the batch indexes in about a
minute on two cores.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from heimdex.dev.samples import Segment, ffmpeg, make_clip

# Every transcoded variant carries this speech and caption, so each can be checked for being searchable.
VARIANT = [
    Segment(
        5.0, speech="The museum will open a new dinosaur exhibition next summer.", caption="WILDLIFE REPORT"
    )
]
VARIANT_WORDS = ("museum", "dinosaur", "exhibition")
VARIANT_CAPTION = "WILDLIFE REPORT"
# The batch's good clip, found first by its own query.
ANCHOR = [Segment(5.0, speech="The lighthouse keeper repaired the lamp during the storm.")]
ANCHOR_QUERY = "lighthouse keeper repairing the lamp in a storm"

# A file name that is not valid UTF-8 (bytes, as an old Latin-1 archive would hold it).
NON_UTF8_NAME = b"caf\xe9 \xff archive.mp4"


@dataclass(frozen=True)
class Expect:
    kind: str  # what this case is about, for the report
    status: str  # ready | failed
    reason: str = ""  # words the failure reason must contain ('' = any readable reason)
    speech: bool = False  # the variant's words must be searchable
    caption: bool = False  # the variant's caption must be searchable (OCR)


def transcode(src: Path, out: Path, options: str) -> None:
    """`options`: ffmpeg output options, split on whitespace (none of them holds a space)."""
    ffmpeg("-i", src, *options.split(), out)


def lavfi(out: Path, source: str, options: str) -> None:
    ffmpeg("-f", "lavfi", "-i", source, *options.split(), out)


X264 = "-c:v libx264 -preset ultrafast"


def make_corpus(folder: Path, work: Path) -> dict[str, Expect]:
    """Write the corpus into `folder`; returns file name -> expectation."""
    folder.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "variant.mp4"
    make_clip(VARIANT, src)
    make_clip(ANCHOR, folder / "good_anchor.mp4")
    data = src.read_bytes()
    x: dict[str, Expect] = {"good_anchor.mp4": Expect("the batch's good clip", "ready")}

    # -- not video at all ------------------------------------------------------------------------
    (folder / "empty.mp4").write_bytes(b"")
    x["empty.mp4"] = Expect("empty file", "failed", "empty file")
    (folder / "random_bytes.mkv").write_bytes(random.Random(11).randbytes(150_000))
    x["random_bytes.mkv"] = Expect("random bytes", "failed", "not a readable media file")
    (folder / "meeting_notes.mov").write_text("minutes of the meeting, not a video\n" * 40)
    x["meeting_notes.mov"] = Expect("text file with a video extension", "failed", "not a readable media file")
    cv2.imwrite(str(work / "still.png"), np.full((180, 320, 3), 90, np.uint8))
    (folder / "still_png.mp4").write_bytes((work / "still.png").read_bytes())
    x["still_png.mp4"] = Expect("PNG renamed .mp4", "failed", "still image")
    cv2.imwrite(str(work / "still.jpg"), np.full((180, 320, 3), 200, np.uint8))
    (folder / "still_jpeg.mov").write_bytes((work / "still.jpg").read_bytes())
    x["still_jpeg.mov"] = Expect("JPEG renamed .mov", "failed", "still image")
    lavfi(folder / "audio_only.mp4", "sine=frequency=330:duration=3", "-c:a aac -f mp4")
    x["audio_only.mp4"] = Expect("audio only (AAC in MP4)", "failed", "no video stream")
    lavfi(folder / "wav_renamed.avi", "sine=frequency=550:duration=2", "-c:a pcm_s16le -f wav")
    x["wav_renamed.avi"] = Expect("WAV renamed .avi", "failed", "no video stream")

    # -- broken copies of a valid file -----------------------------------------------------------
    (folder / "header_only.mp4").write_bytes(data[:1024])
    x["header_only.mp4"] = Expect("first 1 KiB only (header)", "failed", "not a readable media file")
    (folder / "truncated_half.mp4").write_bytes(data[: len(data) // 2])
    x["truncated_half.mp4"] = Expect("truncated at half (index first)", "ready", caption=True)
    tail_index = work / "moov_at_end.mp4"
    transcode(src, tail_index, "-c copy")  # no +faststart: the index comes after the media data
    tail = tail_index.read_bytes()
    (folder / "truncated_no_index.mp4").write_bytes(tail[: len(tail) // 2])
    x["truncated_no_index.mp4"] = Expect(
        "truncated at half (index last, so lost)", "failed", "not a readable media file"
    )
    corrupt = bytearray(data)
    rng = random.Random(5)
    for start in range(len(corrupt) * 2 // 5, len(corrupt) * 3 // 5, 9000):
        corrupt[start : start + 600] = rng.randbytes(600)
    (folder / "corrupt_mid.mp4").write_bytes(bytes(corrupt))
    x["corrupt_mid.mp4"] = Expect("random bytes over frames in the middle", "ready", caption=True)

    # -- valid but odd containers, codecs and pixel formats --------------------------------------
    both = {"speech": True, "caption": True}
    transcode(src, folder / "matroska_named.mp4", "-c copy -f matroska")
    x["matroska_named.mp4"] = Expect("Matroska with an .mp4 name", "ready", **both)
    transcode(src, folder / "video_only.mp4", "-an -c:v copy")
    x["video_only.mp4"] = Expect("video only, no audio", "ready", caption=True)
    transcode(src, folder / "h264_yuv444p.mp4", f"{X264} -pix_fmt yuv444p -c:a copy")
    x["h264_yuv444p.mp4"] = Expect("H.264 4:4:4", "ready", **both)
    transcode(src, folder / "h264_10bit.mkv", f"{X264} -pix_fmt yuv420p10le -c:a copy")
    x["h264_10bit.mkv"] = Expect("H.264 10-bit 4:2:0 in MKV", "ready", **both)
    vp9 = "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 400k -c:a libopus"
    transcode(src, folder / "vp9_opus.webm", vp9)
    x["vp9_opus.webm"] = Expect("VP9 + Opus in WebM", "ready", **both)
    transcode(src, folder / "mjpeg_pcm.avi", "-c:v mjpeg -q:v 4 -c:a pcm_s16le")
    x["mjpeg_pcm.avi"] = Expect("Motion JPEG + PCM in AVI", "ready", **both)
    transcode(src, folder / "prores.mov", "-vf scale=480:270 -c:v prores_ks -profile:v 0 -c:a pcm_s16le")
    x["prores.mov"] = Expect("ProRes 422 Proxy (10-bit 4:2:2) + PCM in MOV", "ready", **both)
    transcode(src, folder / "ffv1_odd_size.mkv", "-vf scale=641:361 -c:v ffv1 -pix_fmt yuv420p -c:a copy")
    x["ffv1_odd_size.mkv"] = Expect("FFV1 lossless, odd frame size 641x361", "ready", **both)
    transcode(src, folder / "mpeg2_mp2.ts", "-c:v mpeg2video -q:v 4 -c:a mp2")
    x["mpeg2_mp2.ts"] = Expect("MPEG-2 + MP2 in MPEG-TS", "ready", **both)
    hevc = "-c:v libx265 -preset ultrafast -x265-params log-level=error -tag:v hvc1 -c:a copy"
    transcode(src, folder / "hevc.mp4", hevc)
    x["hevc.mp4"] = Expect("HEVC", "ready", **both)
    # Rotated phone clip: stored sideways, upright only through the display matrix (rotate=90).
    sideways = work / "sideways.mp4"
    transcode(src, sideways, f"-vf transpose=clock {X264} -c:a copy")
    transcode(sideways, folder / "phone_rotated.mp4", "-c copy -metadata:s:v:0 rotate=90")
    x["phone_rotated.mp4"] = Expect("portrait storage with a rotation display matrix", "ready", **both)
    # Variable frame rate: every third frame, then a run of all frames; timestamps passed through.
    vfr = f"-vf select='not(mod(n\\,3))+between(n\\,40\\,70)' -fps_mode vfr {X264} -c:a copy"
    transcode(src, folder / "vfr.mkv", vfr)
    x["vfr.mkv"] = Expect("variable frame rate", "ready", speech=True)

    # -- sizes -----------------------------------------------------------------------------------
    lavfi(folder / "one_pixel.mkv", "color=c=red:s=1x1:r=10,format=rgb24", "-t 2 -c:v ffv1")
    x["one_pixel.mkv"] = Expect("1x1 pixels", "failed", "too small")
    lavfi(folder / "tiny_16x16.mp4", "testsrc=s=16x16:r=10", f"-t 2 {X264} -pix_fmt yuv420p")
    x["tiny_16x16.mp4"] = Expect("16x16 pixels", "ready")
    lavfi(folder / "huge_4096x2160.mp4", "testsrc2=s=4096x2160:r=5", f"-t 1.6 {X264} -pix_fmt yuv420p")
    x["huge_4096x2160.mp4"] = Expect("4096x2160 (DCI 4K)", "ready")
    ffmpeg(
        *["-f", "lavfi", "-i", "color=c=black:s=160x90:r=2"],
        *["-f", "lavfi", "-i", "anoisesrc=r=16000:color=pink:amplitude=0.002:seed=3"],
        *f"-t 180 {X264} -c:a aac -b:a 16k".split(),
        folder / "silent_3min.mp4",
    )
    x["silent_3min.mp4"] = Expect("three minutes of black and faint room tone", "ready")

    # -- hostile names (valid media under each) --------------------------------------------------
    small = work / "small.mp4"
    transcode(src, small, f"-vf scale=320:180 {X264} -c:a copy")
    for name, kind in (
        ("-leading dash.mp4", "name starting with '-'"),
        ('it\'s "quoted" & spaced.mp4', "quotes, ampersand and spaces"),
        ("line\nbreak.mp4", "newline in the name"),
        ("..mp4", "name '..mp4'"),
        ("..%2F..%2Fetc%2Fpasswd.mp4", "encoded path traversal"),
    ):
        (folder / name).write_bytes(small.read_bytes())
        x[name] = Expect(kind, "ready", speech=True)
    with open(os.fsencode(folder) + b"/" + NON_UTF8_NAME, "wb") as fh:
        fh.write(small.read_bytes())
    x[os.fsdecode(NON_UTF8_NAME)] = Expect("file name that is not UTF-8", "failed", "not valid UTF-8")
    return x
