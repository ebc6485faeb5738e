"""`make bench-web`: the web app's search page in a real browser at 100k scenes.

    make bench-web                      # 100,000 scenes, 20 searches
    SCENES=100000 SEARCHES=20 make bench-web

The corpus is bench_load's (bench_search's synthetic scenes, loaded once into .bench/load-{N}-s{SEED}/
and reused), served by the real API app on waitress in this process (tests/browser.py), queried by
a headless chromium signed in (one-time link) as the largest organisation. Each search types a
different query of that organisation into the box and presses Enter; the page marks
"heimdex:search-start" in its submit handler and "heimdex:first-results" two animation frames after
the results are in the DOM (the frame that shows them has been painted), and this reads the measure
between them. Also: the script and style bytes the search page transferred for its first paint,
in a fresh browser (Resource Timing transferSize, uncompressed: waitress does not gzip). The last
line is one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from tests.browser import Browser, served

from bench import bench_search as bs
from bench.bench_load import percentile, prepare
from heimdex import logs

BUDGET_BYTES = 100 * 1024  # issue 16: first paint of the search page under 100 KB of script and style


RESOURCES = (
    "return performance.getEntriesByType('resource').map(e => [e.name, e.transferSize, e.encodedBodySize])"
)
LAST_MEASURE = "const m = performance.getEntriesByName('heimdex:search', 'measure'); return m[0]?.duration"


def first_paint_bytes(b: Browser) -> dict[str, Any]:
    """Script and style bytes the search page transferred until its box was drawn: right after
    the sign-in link's redirect, in a fresh browser (nothing cached)."""
    b.wait_for(lambda d: d.find_elements(By.ID, "q"), what="the search box")
    entries = b.js(RESOURCES)
    files = {
        name.split("/static/", 1)[-1]: int(size or body)
        for name, size, body in entries
        if name.endswith((".js", ".css"))
    }
    total = sum(files.values())
    return {"script_style_bytes": total, "under_budget": total < BUDGET_BYTES, "files": files}


def search_ms(b: Browser, text: str) -> float:
    box = b.driver.find_element(By.ID, "q")
    b.js("performance.clearMeasures('heimdex:search'); arguments[0].value = ''", box)
    box.send_keys(text, Keys.ENTER)
    measure = b.wait_for(
        lambda d: b.js(
            "const m = performance.getEntriesByName('heimdex:search', 'measure'); return m[0]?.duration"
        ),
        what="the results painted",
    )
    if not b.driver.find_elements(By.CSS_SELECTOR, "ol.results li.hit"):
        raise SystemExit(f"no results for {text!r}: the bench needs queries that find something")
    return float(measure)


def main() -> None:
    logs.setup("WARNING")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    scenes = int(os.environ.get("SCENES", "100000"))
    searches = int(os.environ.get("SEARCHES", "20"))
    seed = int(os.environ.get("SEED", "7"))
    load_before = os.getloadavg()
    _home, _urls, work, _tokens, engine = prepare(scenes, seed, ["onnx"])
    org = bs.LARGEST_ORG
    texts = list(dict.fromkeys(t for o, t in work if o == org))[: searches + 1]
    try:
        with served(engine) as base, Browser() as b:
            b.sign_in(base, engine, org=org)
            size = first_paint_bytes(b)
            search_ms(b, texts[0])  # warm-up: the page's modules, the server's first query
            times = [search_ms(b, t) for t in texts[1 : searches + 1]]
            errors = b.console_errors()
    finally:
        engine.close()
    figures = {
        "scenes": scenes,
        "org": org,
        "searches": len(times),
        "enter_to_first_result_painted_ms": {
            "median": round(statistics.median(times), 1),
            "p90": round(percentile(times, 90), 1),
            "min": round(min(times), 1),
            "max": round(max(times), 1),
        },
        **size,
        "console_errors": errors,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(figures), file=sys.stdout)


if __name__ == "__main__":
    main()
