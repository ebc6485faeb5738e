"""OCR reads every keyframe that needs reading in one Tesseract process: each page's words must
come back to its own keyframe, a page without text must stay empty, and order must hold."""

from __future__ import annotations

import cv2
import numpy as np

from heimdex.stages import ocr


def card(text: str | None) -> bytes:
    img = np.full((360, 640, 3), 30, np.uint8)
    if text:
        cv2.putText(img, text, (40, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 3, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def test_one_process_reads_each_page_into_its_own_keyframe() -> None:
    pages = ocr.tesseract_words(
        [card("HARBOUR FIRE"), card(None), card("CITY COUNCIL"), card("HARBOUR FIRE")], "eng"
    )
    assert pages == [["HARBOUR", "FIRE"], [], ["CITY", "COUNCIL"], ["HARBOUR", "FIRE"]]
    assert ocr.tesseract_words([], "eng") == []


def test_edges_decide_what_is_read() -> None:
    blank, title = ocr.edge_signature(card(None)), ocr.edge_signature(card("HARBOUR FIRE"))
    assert blank.mean() < ocr.MIN_EDGE_SHARE <= title.mean()
    assert ocr.same_edges(title, ocr.edge_signature(card("HARBOUR FIRE")))
    assert not ocr.same_edges(title, ocr.edge_signature(card("CITY COUNCIL")))
