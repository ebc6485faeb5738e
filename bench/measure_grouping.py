"""Face-track distances and grouping precision/recall on the people tests' clips.

    python -m pytest --basetemp=/tmp/people-pytest tests/test_people.py
    python -m bench.measure_grouping /tmp/people-pytest/heimdex-home0/derived/people-test

Reads the faces stage outputs of the clips tests/test_people.py composes (`interview`: Obama 0-3 s,
Biden 6-9 s; `speech`: Obama 0-4 s, Obama left and Biden right 7-10 s), labels each track by when
and where it is, and replays the product's incremental grouping (nearest face within a threshold)
at several thresholds: pairwise precision and recall against the labels.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np


def who(source: str, mid: float, x: float) -> str:
    if source == "interview.mp4":
        return "obama" if mid < 3 else "biden"
    if source == "speech.mp4" and mid < 4:
        return "obama"
    if source == "speech.mp4" and mid > 7:
        return "obama" if x < 0.5 else "biden"
    return "?"


def main() -> None:
    root = Path(sys.argv[1])
    tracks: list[tuple[str, float, str, np.ndarray]] = []
    for side in sorted((root / "sidecars").glob("*.json")):
        doc = json.loads(side.read_text())
        source = Path(doc["asset"]["source"]).name
        out = root / doc["asset"]["asset_id"] / "faces.json"
        if out.exists():
            for t in json.loads(out.read_text())["tracks"]:
                mid, x = (t["start"] + t["end"]) / 2, (t["box"][0] + t["box"][2]) / 2
                tracks.append((source, t["start"], who(source, mid, x), np.array(t["embedding"])))
    pairs = list(itertools.combinations(range(len(tracks)), 2))
    dist = {(i, j): float(np.linalg.norm(tracks[i][3] - tracks[j][3])) for i, j in pairs}
    same = [d for (i, j), d in dist.items() if tracks[i][2] == tracks[j][2]]
    diff = [d for (i, j), d in dist.items() if tracks[i][2] != tracks[j][2]]
    print(
        f"tracks {len(tracks)}: same person {min(same):.3f}-{max(same):.3f},"
        f" different {min(diff):.3f}-{max(diff):.3f}"
    )
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7):
        label: list[int] = []
        for i in range(len(tracks)):
            near = min(((dist[(j, i)], label[j]) for j in range(i)), default=(9.0, -1))
            label.append(near[1] if near[0] <= threshold else max(label, default=-1) + 1)
        tp = sum(label[i] == label[j] and tracks[i][2] == tracks[j][2] for i, j in pairs)
        fp = sum(label[i] == label[j] and tracks[i][2] != tracks[j][2] for i, j in pairs)
        fn = sum(label[i] != label[j] and tracks[i][2] == tracks[j][2] for i, j in pairs)
        print(
            f"threshold {threshold}: {len(set(label))} groups, pairwise precision {tp / max(tp + fp, 1):.3f}"
            f" recall {tp / max(tp + fn, 1):.3f}"
        )


if __name__ == "__main__":
    main()
