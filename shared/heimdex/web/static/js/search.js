// The search page: one box, filters, results as moments. The URL holds the query (?q=&person=
// &source=&after=&before=&kind=) so a search can be shared; / focuses the box, the arrow keys move
// through the results, Enter opens one. performance marks: "heimdex:search-start" when a search is
// submitted, "heimdex:first-results" once its results are painted, and the measure
// "heimdex:search" between them (bench/bench_web.py reads it).
import { api, describe } from "./api.js";
import { clock, fileName, h, message, personChip } from "./dom.js";

const FILTERS = ["person", "source", "after", "before", "kind"];
const WORD = /[\p{L}\p{N}]+/gu;

// Words too common to be worth marking.
const STOP = new Set(
  "a an and are as at be but by for from has have he her his in is it its of on or she that the their they this to was were will with you".split(" "),
);

// Query words worth marking in a snippet (lower case, 2+ characters, not a stop word).
export function queryWords(q) {
  return new Set((q.toLowerCase().match(WORD) || []).filter((w) => w.length > 1 && !STOP.has(w)));
}

// The snippet as text nodes, with each word that matches a query word (or starts with one, so
// "fire" marks "fires") inside <mark>.
export function marked(text, words) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(WORD)) {
    const word = m[0].toLowerCase();
    const hit = [...words].some((w) => word === w || (w.length > 3 && word.startsWith(w)));
    if (!hit) continue;
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    const mark = document.createElement("mark");
    mark.textContent = m[0];
    out.push(mark);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

function watchHref(hit) {
  return `/watch/${encodeURIComponent(hit.asset_id)}?t=${hit.start.toFixed(1)}`;
}

function result(hit, words) {
  const name = fileName(hit.source);
  const range = `${clock(hit.start)}–${clock(hit.end)}`;
  return h(
    "li",
    { class: "hit" },
    h(
      "a",
      { class: "hit-link", href: watchHref(hit) },
      hit.thumbnail_url
        ? h("img", { class: "thumb", src: hit.thumbnail_url, alt: "", loading: "lazy", width: 160, height: 90 })
        : h("span", { class: "thumb none", "aria-hidden": "true" }),
      h(
        "span",
        { class: "hit-body" },
        h("span", { class: "hit-head" }, h("span", { class: "file" }, name), h("span", { class: "range" }, range)),
        h("span", { class: "snippet" }, marked(hit.text || "", words)),
      ),
    ),
    hit.people.length ? h("span", { class: "chips", "aria-label": "People" }, hit.people.map(personChip)) : null,
  );
}

function form(query, people) {
  const value = (k) => query.get(k) || "";
  const field = (label, input) => h("label", { class: "field" }, h("span", {}, label), input);
  return h(
    "form",
    { class: "search", role: "search" },
    h(
      "div",
      { class: "box" },
      h("input", {
        id: "q",
        name: "q",
        type: "search",
        value: value("q"),
        placeholder: "Search what is said, shown or written…  (press / )",
        "aria-label": "Search",
        autocomplete: "off",
        autofocus: true,
      }),
      h("button", { type: "submit" }, "Search"),
    ),
    h(
      "fieldset",
      { class: "filters" },
      h("legend", {}, "Filters"),
      field("Person", h("input", { name: "person", value: value("person"), list: "people-names", autocomplete: "off" })),
      h("datalist", { id: "people-names" }, people.map((p) => h("option", { value: p.name }))),
      field("Folder", h("input", { name: "source", value: value("source"), placeholder: "/videos/news/" })),
      field("Indexed after", h("input", { name: "after", type: "date", value: value("after").slice(0, 10) })),
      field("Indexed before", h("input", { name: "before", type: "date", value: value("before").slice(0, 10) })),
      field(
        "Kind",
        h(
          "select",
          { name: "kind" },
          [
            ["", "Anything"],
            ["speech", "Spoken"],
            ["text", "On screen"],
          ].map(([v, label]) => h("option", { value: v, selected: value("kind") === v }, label)),
        ),
      ),
    ),
  );
}

function params(query) {
  const out = { q: query.get("q") || "", k: 20 };
  for (const key of FILTERS) {
    let v = query.get(key);
    if (!v) continue;
    if ((key === "after" || key === "before") && /^\d{4}-\d{2}-\d{2}$/.test(v)) v = `${v}T00:00:00Z`;
    out[key] = v;
  }
  return out;
}

export async function render(main, { query, navigate }) {
  const searchForm = form(query, []);
  // Names for the person filter's suggestions; the search does not wait for them.
  api("/v1/people")
    .then((doc) => {
      const names = doc.people.filter((p) => p.name).map((p) => h("option", { value: p.name }));
      searchForm.querySelector("#people-names").replaceChildren(...names);
    })
    .catch(() => {});
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const list = h("ol", { class: "results", "aria-label": "Results" });
  main.replaceChildren(h("h1", { class: "visually-hidden" }, "Search"), searchForm, status, list);
  const box = searchForm.querySelector("#q");
  let controller = null;

  async function run() {
    const p = params(query);
    if (!p.q.trim() && !p.person) {
      status.textContent = "";
      list.replaceChildren();
      return;
    }
    if (controller) controller.abort();
    controller = new AbortController();
    status.textContent = "Searching…";
    let doc;
    try {
      doc = await api("/v1/search", { params: p, signal: controller.signal });
    } catch (err) {
      const text = describe(err);
      if (text) {
        list.replaceChildren();
        status.replaceChildren(message(text, "error"));
      }
      return;
    }
    const words = queryWords(p.q);
    list.replaceChildren(...doc.results.map((hit) => result(hit, words)));
    status.textContent = doc.results.length
      ? `${doc.results.length} moment${doc.results.length === 1 ? "" : "s"}`
      : "Nothing found. Try other words or fewer filters.";
    requestAnimationFrame(() =>
      requestAnimationFrame(() => {
        performance.mark("heimdex:first-results");
        if (performance.getEntriesByName("heimdex:search-start", "mark").length) {
          performance.measure("heimdex:search", "heimdex:search-start", "heimdex:first-results");
        }
      }),
    );
  }

  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    performance.clearMarks("heimdex:search-start");
    performance.clearMarks("heimdex:first-results");
    performance.clearMeasures("heimdex:search");
    performance.mark("heimdex:search-start");
    const data = new FormData(searchForm);
    const next = new URLSearchParams();
    for (const key of ["q", ...FILTERS]) {
      const v = String(data.get(key) || "").trim();
      if (v) next.set(key, v);
    }
    const href = next.toString() ? `/?${next}` : "/";
    if (href === window.location.pathname + window.location.search) {
      run();
    } else {
      navigate(href);
    }
  });

  function onKey(event) {
    const inField = event.target.closest("input, select, textarea");
    if (event.key === "/" && !inField) {
      event.preventDefault();
      box.focus();
      box.select();
      return;
    }
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const links = [...list.querySelectorAll("a.hit-link")];
    if (!links.length || (inField && event.target !== box)) return;
    const at = links.indexOf(document.activeElement);
    let next;
    if (event.key === "ArrowDown") next = at < 0 ? 0 : Math.min(at + 1, links.length - 1);
    else if (at <= 0) next = -1;
    else next = at - 1;
    event.preventDefault();
    if (next < 0) box.focus();
    else links[next].focus();
  }
  document.addEventListener("keydown", onKey);
  if (!query.get("q")) box.focus();
  await run();
  return () => {
    document.removeEventListener("keydown", onKey);
    if (controller) controller.abort();
  };
}
