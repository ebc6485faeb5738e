"""Which frames to read for on-screen text: where the text regions change, within each shot.

Text on screen is edges that hold still. Every sampled frame gets an edge map (Canny on a small,
slightly blurred grey copy, dilated); the edges that hold between two neighbouring samples of a
shot (their AND) drop what moves (camera motion, moving patterns, noise) and keep overlays, cards,
lower thirds and static patterns. That map is summed over a grid of small cells: a caption that
appears, changes or goes changes the density of several cells, whatever else is on screen. A frame
is read when its cells differ from those of the last frame read in the shot (or it is the shot's
first with static edges); a change to no static edges at all ends what was on screen without
reading anything. Between two changes the screen's text is taken to be what was last read.

Where only some rows of cells changed (a clock ticking in a corner, a lower third coming in), only
horizontal bands around them are read (`bands`, as shares of the height): captions run across, so a
band holds whole lines, and reading a band costs a fraction of reading the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIGNATURE_WIDTH = 320
CELL = 10  # pixels of the signature per grid cell
MIN_STATIC_SHARE = 0.002  # below this share of static edge pixels nothing readable is on screen
CELL_CHANGE = 0.12  # a cell changed when its edge density moved by this much
MIN_CHANGED_CELLS = 2
BAND_PAD = 1  # cells above and below the changed rows
MAX_BAND_SHARE = 0.5  # bands covering more of the height than this: read the whole frame


def edge_map(gray: np.ndarray) -> np.ndarray:
    """The dilated edges of a grey frame at SIGNATURE_WIDTH, bit-packed (rows of bytes)."""
    h = max(CELL, round(gray.shape[0] * SIGNATURE_WIDTH / gray.shape[1]))
    small = cv2.resize(gray, (SIGNATURE_WIDTH, h), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (3, 3), 0)
    edges = cv2.dilate(cv2.Canny(small, 80, 200), np.ones((3, 3), np.uint8))
    return np.packbits(edges > 0, axis=1)


def _unpack(packed: np.ndarray) -> np.ndarray:
    return np.unpackbits(packed, axis=1)[:, :SIGNATURE_WIDTH].astype(bool)


def cells(static: np.ndarray) -> np.ndarray:
    """Edge density per CELL x CELL cell."""
    h = static.shape[0] - static.shape[0] % CELL
    w = static.shape[1] - static.shape[1] % CELL
    grid = static[:h, :w].reshape(h // CELL, CELL, w // CELL, CELL)
    result: np.ndarray = grid.mean(axis=(1, 3))
    return result


@dataclass(frozen=True)
class TextFrame:
    index: int  # into the sampled frames
    time: float
    shot: int
    read: bool  # False: the screen has no static edges from here on (what was there has gone)
    bands: tuple[tuple[float, float], ...] | None = None  # read only these (top, bottom); None: all


def bands(changed_rows: np.ndarray) -> tuple[tuple[float, float], ...] | None:
    """Horizontal bands (shares of the height) around the rows of cells that changed, padded and
    merged; None when they cover more than MAX_BAND_SHARE of the frame."""
    n = len(changed_rows)
    covered = np.zeros(n, bool)
    for row in np.flatnonzero(changed_rows).tolist():
        covered[max(0, row - BAND_PAD) : row + BAND_PAD + 1] = True
    if covered.mean() > MAX_BAND_SHARE:
        return None
    out = []
    start: int | None = None
    for r in range(n + 1):
        inside = r < n and bool(covered[r])
        if inside and start is None:
            start = r
        elif not inside and start is not None:
            out.append((start / n, r / n))
            start = None
    return tuple(out)


def select(times: list[float], maps: list[np.ndarray], shots: list[tuple[float, float]]) -> list[TextFrame]:
    """The sampled frames at which the text on screen changes, shot by shot, in time order."""
    out: list[TextFrame] = []
    t = np.asarray(times)
    for shot_index, (start, end) in enumerate(shots):
        idx = list(range(int(np.searchsorted(t, start)), int(np.searchsorted(t, end))))
        if not idx:
            continue
        edges = [_unpack(maps[i]) for i in idx]
        last: np.ndarray | None = None  # cells of the last frame read
        showing = False
        for k, i in enumerate(idx):
            nxt = edges[k + 1] if k + 1 < len(idx) else edges[k - 1] if k else edges[k]
            static = edges[k] & nxt
            if static.mean() < MIN_STATIC_SHARE:
                if showing:
                    out.append(TextFrame(i, times[i], shot_index, read=False))
                showing, last = False, None
                continue
            grid = cells(static)
            if last is None:
                out.append(TextFrame(i, times[i], shot_index, read=True))
                last, showing = grid, True
                continue
            changed = np.abs(grid - last) > CELL_CHANGE
            if int(changed.sum()) >= MIN_CHANGED_CELLS:
                out.append(TextFrame(i, times[i], shot_index, read=True, bands=bands(changed.any(axis=1))))
                last, showing = grid, True
    return out
