// The watch page, /watch/<asset_id>?t=SECONDS: the player starts at that second; below it the
// scene strip (click seeks), the transcript synced with playback (the current line has
// aria-current; click a line seeks), the on-screen text and people of the current scene, captions
// from the VTT endpoint, and a button that copies a link to this moment.
import { api, describe } from "./api.js";
import { clock, fileName, h, message, personChip } from "./dom.js";

// The transcript lines: the sidecar's speech segments, else the scenes' transcripts.
function lines(sidecar, scenes) {
  const segments = sidecar?.transcript?.segments || [];
  const from = segments.length ? segments : scenes.map((s) => ({ start: s.start, end: s.end, text: s.transcript }));
  return from.filter((l) => l.text && l.text.trim()).map((l) => ({ start: l.start, end: l.end, text: l.text.trim() }));
}

// The item (line or scene) that started last at or before `t`; -1 before the first.
export function startedAt(all, t) {
  let found = -1;
  for (let i = 0; i < all.length; i++) {
    if (all[i].start <= t + 0.05) found = i;
    else break;
  }
  return found;
}

// The transcript line of the moment `t`: the one spoken at `t`; in a pause, the next line if it
// starts before `until` (the end of the scene playing: a hit's scene may open on silence), else
// the last one spoken.
export function lineAt(all, t, until = t) {
  const last = startedAt(all, t);
  if (last >= 0 && t <= all[last].end + 0.05) return last;
  if (last + 1 < all.length && all[last + 1].start < until) return last + 1;
  return last;
}

export async function render(main, { params, query }) {
  const assetId = params[0];
  const start = Math.max(0, Number.parseFloat(query.get("t") || "0") || 0);
  main.replaceChildren(h("p", { class: "status", role: "status" }, "Loading…"));
  let asset;
  let sceneList;
  try {
    [asset, sceneList] = await Promise.all([
      api(`/v1/assets/${encodeURIComponent(assetId)}`),
      api(`/v1/assets/${encodeURIComponent(assetId)}/scenes`),
    ]);
  } catch (err) {
    main.replaceChildren(h("h1", {}, "Watch"), message(describe(err), "error"));
    return null;
  }
  const [sidecar, people] = await Promise.all([
    api(`/v1/assets/${encodeURIComponent(assetId)}/sidecar`).catch(() => null),
    api("/v1/people").then((d) => d.people).catch(() => []),
  ]);
  const names = new Map(people.map((p) => [p.id, p.name]));
  const scenes = sceneList.scenes;
  const facesOf = new Map((sidecar?.scenes || []).map((s) => [s.index, s.faces || []]));
  const transcript = lines(sidecar, scenes);

  const video = h(
    "video",
    { id: "player", controls: true, preload: "auto", src: `${asset.media_url}#t=${start.toFixed(1)}` },
    h("track", {
      kind: "captions",
      label: "Captions",
      srclang: asset.language || "en",
      src: `/v1/assets/${encodeURIComponent(assetId)}/captions.vtt`,
      default: true,
    }),
  );
  video.addEventListener(
    "loadedmetadata",
    () => {
      if (Math.abs(video.currentTime - start) > 0.25) video.currentTime = start;
    },
    { once: true },
  );
  const seek = (t) => {
    video.currentTime = t;
    if (video.paused) video.play().catch(() => {});
  };

  const strip = h(
    "ol",
    { class: "strip", "aria-label": "Scenes" },
    scenes.map((s) =>
      h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "scene", dataset: { start: s.start }, onclick: () => seek(s.start), "aria-label": `Scene at ${clock(s.start)}` },
          s.thumbnail_url ? h("img", { src: s.thumbnail_url, alt: "", width: 128, height: 72 }) : h("span", { class: "thumb none" }),
          h("span", { class: "at" }, clock(s.start)),
        ),
      ),
    ),
  );
  const lineList = h(
    "ol",
    { class: "transcript", "aria-label": "Transcript" },
    transcript.map((l) =>
      h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "line", dataset: { start: l.start }, onclick: () => seek(l.start) },
          h("span", { class: "at" }, clock(l.start)),
          h("span", { class: "text" }, l.text),
        ),
      ),
    ),
  );
  const screenText = h("p", { class: "screen-text" });
  const sceneChips = h("p", { class: "chips" });
  const copyStatus = h("span", { class: "copied", role: "status", "aria-live": "polite" });
  const copy = h(
    "button",
    {
      type: "button",
      onclick: async () => {
        const url = new URL(window.location.href);
        url.search = `?t=${video.currentTime.toFixed(1)}`;
        try {
          await navigator.clipboard.writeText(url.href);
          copyStatus.textContent = "Link copied";
        } catch {
          copyStatus.textContent = url.href;
        }
      },
    },
    "Copy link to this moment",
  );

  main.replaceChildren(
    h(
      "section",
      { class: "watch" },
      h("h1", { class: "title" }, fileName(asset.source)),
      h("p", { class: "source" }, asset.source),
      h(
        "div",
        { class: "stage" },
        h("div", { class: "player" }, video, h("div", { class: "actions" }, copy, copyStatus)),
        h(
          "section",
          { "aria-labelledby": "t-h", class: "side" },
          h("h2", { id: "t-h" }, "Transcript"),
          transcript.length ? lineList : message("No speech."),
        ),
      ),
      h("h2", {}, "Scenes"),
      strip,
      h(
        "section",
        { "aria-labelledby": "s-h", class: "now" },
        h("h2", { id: "s-h" }, "This scene"),
        h("div", { class: "now-grid" }, h("div", {}, h("h3", {}, "On screen"), screenText), h("div", {}, h("h3", {}, "People"), sceneChips)),
      ),
    ),
  );

  const lineButtons = [...lineList.querySelectorAll("button.line")];
  const sceneButtons = [...strip.querySelectorAll("button.scene")];
  let shownLine = -2;
  let shownScene = -2;
  function sync(t) {
    const si = startedAt(scenes, t);
    const li = lineAt(transcript, t, scenes[si] ? scenes[si].end : t);
    if (li !== shownLine) {
      if (lineButtons[shownLine]) lineButtons[shownLine].removeAttribute("aria-current");
      if (lineButtons[li]) {
        lineButtons[li].setAttribute("aria-current", "true");
        lineButtons[li].scrollIntoView({ block: "nearest" });
      }
      shownLine = li;
    }
    if (si !== shownScene) {
      if (sceneButtons[shownScene]) sceneButtons[shownScene].removeAttribute("aria-current");
      if (sceneButtons[si]) sceneButtons[si].setAttribute("aria-current", "true");
      shownScene = si;
      const scene = scenes[si];
      screenText.textContent = scene && scene.ocr_text ? scene.ocr_text : "—";
      const ids = [...new Set((facesOf.get(scene?.index) || []).map((f) => f.person).filter((p) => p !== null && p !== undefined))];
      sceneChips.replaceChildren(...(ids.length ? ids.map((id) => personChip({ id, name: names.get(id) })) : ["—"]));
    }
  }
  for (const event of ["timeupdate", "seeked", "loadedmetadata"]) {
    video.addEventListener(event, () => sync(video.currentTime));
  }
  sync(start); // before the metadata arrives: the moment the page was opened at
  return () => {
    video.pause();
    video.removeAttribute("src");
    video.load();
  };
}
