// The people pages. /people: the organisation's groups of faces, each with its cover face, name
// (or "unnamed") and counts; rename inline, merge another person in, forget (after a confirmation
// that says the face data is erased). /people/<id>: a person's appearances, each a link to the
// Watch page at that second.
import { api, describe } from "./api.js";
import { clock, fileName, h, message } from "./dom.js";

const UNNAMED = "unnamed";

function label(person) {
  return person.name || `${UNNAMED} (person ${person.id})`;
}

function cover(person, size = 96) {
  return person.cover_url
    ? h("img", { class: "face", src: person.cover_url, alt: `Face of ${label(person)}`, width: size, height: size })
    : h("span", { class: "face none", role: "img", "aria-label": `No face picture of ${label(person)}` });
}

function counts(person) {
  const f = `${person.faces} face${person.faces === 1 ? "" : "s"}`;
  const a = `${person.assets} video${person.assets === 1 ? "" : "s"}`;
  return `${f} · ${a}`;
}

// An inline name editor: Enter (or Save) sends, Escape (or Cancel) puts the name back.
function renameForm(person, done, cancel) {
  const input = h("input", {
    name: "name",
    value: person.name || "",
    maxlength: "200",
    autocomplete: "off",
    "aria-label": `New name for ${label(person)}`,
    placeholder: "Name (empty: unnamed)",
  });
  const form = h(
    "form",
    { class: "rename" },
    input,
    h("button", { type: "submit" }, "Save"),
    h("button", { type: "button", onclick: cancel }, "Cancel"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = input.value.trim();
    done(name || null);
  });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      cancel();
    }
  });
  queueMicrotask(() => {
    input.focus();
    input.select();
  });
  return form;
}

// Pick another person whose faces join this one.
function mergeForm(person, people, done, cancel) {
  const others = people.filter((p) => p.id !== person.id);
  const select = h(
    "select",
    { name: "other", "aria-label": `Person to merge into ${label(person)}` },
    others.map((p) => h("option", { value: String(p.id) }, `${label(p)} — ${counts(p)}`)),
  );
  const form = h(
    "form",
    { class: "merge" },
    h("p", {}, `Their faces join ${label(person)}.`),
    select,
    h("button", { type: "submit" }, "Merge"),
    h("button", { type: "button", onclick: cancel }, "Cancel"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    done(Number(select.value));
  });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      cancel();
    }
  });
  queueMicrotask(() => select.focus());
  return form;
}

function confirmForget(person) {
  return window.confirm(
    `Forget ${label(person)}? This erases their face data: every face, its embedding and face picture. ` +
      "A later appearance is a stranger again. This cannot be undone.",
  );
}

async function listPage(main) {
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const grid = h("ul", { class: "people", "aria-label": "People" });
  const heading = h("h1", { tabindex: "-1" }, "People");
  main.replaceChildren(heading, status, grid);
  let people = [];

  async function load(done) {
    const doc = await api("/v1/people");
    people = doc.people;
    grid.replaceChildren(...people.map(card));
    status.textContent =
      done ||
      (people.length
        ? `${people.length} ${people.length === 1 ? "person" : "people"}`
        : "No faces yet. People appear here once videos with faces are indexed.");
  }

  async function act(call, done, focusId) {
    try {
      await call();
      await load(done);
      const again = focusId != null && grid.querySelector(`[data-person="${focusId}"] .name`);
      (again || heading).focus(); // a forgotten person's card is gone: the focus goes to the page's heading
    } catch (err) {
      status.replaceChildren(message(describe(err), "error"));
    }
  }

  function card(person) {
    const name = h(
      "a",
      { class: person.name ? "name" : "name unnamed", href: `/people/${person.id}` },
      person.name || UNNAMED,
    );
    const title = h("h2", {}, name);
    const tools = h("div", { class: "card-actions" });
    const li = h("li", { class: "person", dataset: { person: String(person.id) } }, cover(person), title, h("p", { class: "counts" }, counts(person)), tools);

    function buttons() {
      tools.replaceChildren(
        h("button", { type: "button", class: "rename-button", "aria-label": `Rename ${label(person)}`, onclick: rename }, "Rename"),
        h(
          "button",
          { type: "button", class: "merge-button", "aria-label": `Merge another person into ${label(person)}`, disabled: people.length < 2, onclick: merge },
          "Merge…",
        ),
        h("button", { type: "button", class: "forget-button danger", "aria-label": `Forget ${label(person)}`, onclick: forget }, "Forget"),
      );
    }

    function restore() {
      title.replaceChildren(name);
      buttons();
      name.focus();
    }

    function rename() {
      title.replaceChildren(
        renameForm(
          person,
          (value) =>
            act(
              () => api(`/v1/people/${person.id}`, { method: "PATCH", body: { name: value } }),
              value ? `Renamed to ${value}.` : "The name was removed.",
              person.id,
            ),
          restore,
        ),
      );
      tools.replaceChildren();
    }

    function merge() {
      tools.replaceChildren(
        mergeForm(
          person,
          people,
          (other) =>
            act(
              () => api(`/v1/people/${person.id}/merge`, { method: "POST", body: { other } }),
              `Merged into ${label(person)}.`,
              person.id,
            ),
          restore,
        ),
      );
    }

    function forget() {
      if (!confirmForget(person)) return;
      act(() => api(`/v1/people/${person.id}`, { method: "DELETE" }), `${label(person)} was forgotten: their face data is erased.`);
    }

    buttons();
    return li;
  }

  await load();
  return null;
}

async function personPage(main, id, navigate) {
  main.replaceChildren(h("p", { class: "status", role: "status" }, "Loading…"));
  let person;
  try {
    person = await api(`/v1/people/${encodeURIComponent(id)}`);
  } catch (err) {
    main.replaceChildren(h("h1", {}, "Person"), message(describe(err), "error"));
    return null;
  }
  document.title = `${label(person)} · Heimdex`;
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const list = h(
    "ol",
    { class: "appearances", "aria-label": "Appearances" },
    person.appearances.map((a) => {
      const name = fileName(a.source);
      const range = `${clock(a.start)}–${clock(a.end)}`;
      return h(
        "li",
        {},
        h(
          "a",
          { class: "appearance", href: `/watch/${encodeURIComponent(a.asset_id)}?t=${a.start.toFixed(1)}` },
          a.thumbnail_url
            ? h("img", { class: "face", src: a.thumbnail_url, alt: "", width: 72, height: 72, loading: "lazy" })
            : h("span", { class: "face none", "aria-hidden": "true" }),
          h("span", { class: "file" }, name),
          " ",
          h("span", { class: "range" }, range),
        ),
      );
    }),
  );
  const search = person.name ? `/?person=${encodeURIComponent(person.name)}` : `/?person=${person.id}`;
  main.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "/people" }, "People")),
    h(
      "div",
      { class: "person-head" },
      cover(person, 120),
      h(
        "div",
        {},
        h("h1", { class: person.name ? "" : "unnamed" }, person.name || UNNAMED),
        h("p", { class: "counts" }, counts(person)),
        h(
          "p",
          { class: "card-actions" },
          h("a", { class: "button", href: search }, "Search their moments"),
          h(
            "button",
            {
              type: "button",
              class: "forget-button danger",
              onclick: async () => {
                if (!confirmForget(person)) return;
                try {
                  await api(`/v1/people/${person.id}`, { method: "DELETE" });
                  navigate("/people");
                } catch (err) {
                  status.replaceChildren(message(describe(err), "error"));
                }
              },
            },
            "Forget",
          ),
        ),
      ),
    ),
    status,
    h("h2", {}, "Appearances"),
    person.appearances.length ? list : message("No appearances in indexed videos (only enrolment photos)."),
  );
  return null;
}

export async function render(main, { params, navigate }) {
  if (params.length && params[0]) return personPage(main, params[0], navigate);
  return listPage(main);
}
