"""probe: what the file is (duration, streams, codecs, fps, resolution, rotation), or why it is not video."""

from __future__ import annotations

from typing import Any

import av

from heimdex.core.context import StageContext
from heimdex.domain import MediaError
from heimdex.media import segments

# Demuxers that open single pictures; a renamed still image is not footage.
IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "gif", "tiff_pipe", "apng"}
MIN_DURATION_S = 0.2


def _fps(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else None


def probe_file(path: str, *, max_duration_s: float) -> dict[str, Any]:
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, OSError) as exc:
        # FFmpeg's message alone ("Invalid data found when processing input"), not its errno and the path.
        reason = exc.strerror if isinstance(exc, av.FFmpegError) and exc.strerror else exc
        raise MediaError(f"not a readable media file: {reason}") from exc
    with container:
        fmt = container.format.name
        video = next(iter(container.streams.video), None)
        audio = next(iter(container.streams.audio), None)
        if video is None:
            kind = "audio only" if audio is not None else "no audio or video streams"
            raise MediaError(f"no video stream ({kind})")
        if fmt.split(",")[0] in IMAGE_FORMATS:
            raise MediaError(f"a still image ({video.codec_context.name}), not video")
        try:
            first = next(container.decode(video=0))
        except (av.FFmpegError, StopIteration) as exc:
            raise MediaError(f"video stream cannot be decoded: {exc or 'no frames'}") from exc
        duration = _duration(container, video)
        if duration is None or duration < MIN_DURATION_S:
            raise MediaError(f"video too short or of unknown length ({duration!r} s)")
        if duration > max_duration_s:
            raise MediaError(f"video is {duration:.0f} s long; the limit is {max_duration_s:.0f} s")
        width, height = first.width, first.height
        if width < 16 or height < 16:
            raise MediaError(f"frame size {width}x{height} is too small to index")
        return {
            "format": fmt,
            "duration": round(duration, 3),
            "video": {
                "codec": video.codec_context.name,
                "width": width,
                "height": height,
                "fps": _fps(video),
                "rotation": int(first.rotation or 0),
                "pix_fmt": first.format.name,
                "frames": int(video.frames or 0),
            },
            "audio": None
            if audio is None
            else {
                "codec": audio.codec_context.name,
                "sample_rate": audio.codec_context.sample_rate,
                "channels": audio.codec_context.layout.nb_channels,
            },
        }


def _duration(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> float | None:
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def run(ctx: StageContext) -> dict[str, Any]:
    info = ctx.sources.stat(ctx.ref.source)
    if info.size == 0:
        raise MediaError("empty file")
    if info.size > ctx.settings.max_file_bytes:
        raise MediaError(f"file is {info.size} bytes; the limit is {ctx.settings.max_file_bytes}")
    with ctx.sources.local_path(ctx.ref.source) as path:
        doc = probe_file(str(path), max_duration_s=ctx.settings.max_duration_s)
        doc["segments"] = segments.plan(
            str(path), doc["duration"], ctx.settings.segment_s, has_audio=doc["audio"] is not None
        )
    doc["size"] = info.size
    ctx.write_output("probe", doc)
    return doc
