// The library page, /library: the organisation's assets (file, status, duration, scenes, when
// indexed), a progress bar per running job (tasks finished of the job's tasks, polled), failures
// with their reasons, delete (after a confirmation) and re-index; an upload button that sends a file
// through the /v1/uploads flow with an upload progress bar, then follows its indexing.
import { api, describe, session } from "./api.js";
import { clock, fileName, h, message } from "./dom.js";

const PAGE = 200; // assets per request
const POLL_MS = 1500; // while a job runs or an upload is indexed

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function progressBar(label, done, total) {
  return h("progress", { class: "job", max: String(total), value: String(done), "aria-label": label });
}

// The status cell: ready, processing with its bar, or failed with the reason.
function statusCell(asset, name) {
  if (asset.status === "processing") {
    const p = asset.progress;
    const cell = h("td", { class: "state processing" }, h("span", { class: "badge" }, "Indexing"));
    if (p) {
      cell.append(
        progressBar(`Indexing ${name}`, p.done, p.total),
        h("span", { class: "steps" }, `${p.done} of ${p.total} steps`, p.running.length ? ` · ${p.running.join(", ")}` : ""),
      );
    }
    return cell;
  }
  if (asset.status === "failed") {
    return h(
      "td",
      { class: "state failed" },
      h("span", { class: "badge" }, "Failed"),
      h("span", { class: "reason" }, asset.error || "no reason was recorded"),
    );
  }
  const skipped = Object.keys(asset.skipped || {});
  return h(
    "td",
    { class: "state ready" },
    h("span", { class: "badge" }, "Ready"),
    skipped.length ? h("span", { class: "note", title: Object.values(asset.skipped).join("; ") }, `without ${skipped.join(", ")}`) : null,
  );
}

export async function render(main) {
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const rows = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Show more");
  const table = h(
    "table",
    { class: "assets" },
    h("caption", { class: "visually-hidden" }, "Assets"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["File", "Status", "Duration", "Scenes", "Indexed at", "Actions"].map((t) => h("th", { scope: "col" }, t)),
      ),
    ),
    rows,
  );
  const upload = uploader(() => refresh());
  main.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Library"), upload.node), upload.panel, status, table, more);

  let assets = [];
  let cursor = null;
  let pages = 1;
  let timer = null;
  let gone = false;

  function draw() {
    rows.replaceChildren(...assets.map(row));
    more.hidden = !cursor;
    const running = assets.filter((a) => a.status === "processing").length;
    const failed = assets.filter((a) => a.status === "failed").length;
    status.textContent = assets.length
      ? `${assets.length} asset${assets.length === 1 ? "" : "s"}` +
        (running ? ` · ${running} indexing` : "") +
        (failed ? ` · ${failed} failed` : "")
      : "Nothing is indexed yet. Upload a video, or run heimdex index on a folder.";
  }

  function row(asset) {
    const name = fileName(asset.source);
    return h(
      "tr",
      { dataset: { asset: asset.asset_id, status: asset.status } },
      h("th", { scope: "row", class: "file" }, asset.status === "ready" ? h("a", { href: `/watch/${asset.asset_id}?t=0` }, name) : name, h("span", { class: "source", title: asset.source }, h("bdi", {}, asset.source))),
      statusCell(asset, name),
      h("td", { class: "num" }, asset.duration != null ? clock(asset.duration) : ""),
      h("td", { class: "num" }, asset.status === "ready" ? String(asset.scenes) : ""),
      h("td", { class: "when" }, when(asset.indexed_at)),
      h(
        "td",
        { class: "row-actions" },
        h(
          "button",
          {
            type: "button",
            class: "reindex",
            disabled: asset.status === "processing",
            "aria-label": `Re-index ${name}`,
            onclick: () => act(() => api(`/v1/assets/${asset.asset_id}/reindex`, { method: "POST" }), `Re-indexing ${name}.`),
          },
          "Re-index",
        ),
        h(
          "button",
          {
            type: "button",
            class: "delete danger",
            "aria-label": `Delete ${name}`,
            onclick: () => {
              const sure = window.confirm(
                `Delete ${name} from the index? Its scenes, thumbnails and people's appearances in it go; the original file stays.`,
              );
              if (sure) act(() => api(`/v1/assets/${asset.asset_id}`, { method: "DELETE" }), `Deleted ${name}.`);
            },
          },
          "Delete",
        ),
      ),
    );
  }

  async function act(call, done) {
    try {
      await call();
      await refresh();
      status.textContent = done;
    } catch (err) {
      status.replaceChildren(message(describe(err), "error"));
    }
  }

  async function load(limit, after) {
    return api("/v1/assets", { params: { limit, cursor: after } });
  }

  // Reload every page shown so far (statuses and progress change everywhere).
  async function refresh() {
    const got = [];
    let next = null;
    for (let i = 0; i < pages; i++) {
      const doc = await load(PAGE, next);
      got.push(...doc.assets);
      next = doc.next_cursor;
      if (!next) break;
    }
    if (gone) return;
    assets = got;
    cursor = next;
    draw();
    // An upload that ends here may end before its row did in the list just read: read it once more.
    const ended = await upload.follow(assets);
    schedule(ended);
  }

  function schedule(again = false) {
    clearTimeout(timer);
    timer = null;
    if (gone) return;
    if (again || assets.some((a) => a.status === "processing") || upload.busy()) {
      timer = setTimeout(() => refresh().catch((err) => status.replaceChildren(message(describe(err), "error"))), POLL_MS);
    }
  }

  more.addEventListener("click", async () => {
    try {
      const doc = await load(PAGE, cursor);
      pages += 1;
      assets = assets.concat(doc.assets);
      cursor = doc.next_cursor;
      draw();
    } catch (err) {
      status.replaceChildren(message(describe(err), "error"));
    }
  });

  await refresh();
  return () => {
    gone = true;
    clearTimeout(timer);
    upload.abort();
  };
}

// The upload button and its panel: POST /v1/uploads, then the bytes by XMLHttpRequest (its upload
// progress events drive the bar) to the upload_url it answers, then the asset's indexing progress.
function uploader(changed) {
  const input = h("input", { type: "file", id: "upload-file", accept: "video/*", hidden: true, "aria-label": "Video file to upload" });
  const button = h("button", { type: "button", class: "upload-button", onclick: () => input.click() }, "Upload a video");
  const node = h("div", { class: "upload" }, input, button);
  const panel = h("section", { class: "upload-panel", "aria-label": "Upload", hidden: true });
  let xhr = null;
  let current = null; // {upload, asset_id, state}

  function show(name, phase, done, total, text) {
    panel.hidden = false;
    panel.dataset.phase = phase.toLowerCase(); // uploading, indexing, indexed (or failed)
    panel.replaceChildren(
      h("h2", {}, name),
      h("progress", { id: "upload-progress", max: String(total), value: String(done), "aria-label": `${phase} ${name}` }),
      h("p", { class: "upload-state", role: "status", "aria-live": "polite" }, text),
    );
  }

  function fail(name, text) {
    panel.hidden = false;
    panel.dataset.phase = "failed";
    panel.replaceChildren(h("h2", {}, name), message(text, "error"));
    current = null;
  }

  function send(up, file, csrf) {
    return new Promise((resolve, reject) => {
      xhr = new XMLHttpRequest();
      xhr.open("PUT", up.upload_url);
      const local = new URL(up.upload_url, window.location.href).origin === window.location.origin;
      if (local) {
        xhr.withCredentials = true;
        if (csrf) xhr.setRequestHeader("X-CSRF-Token", csrf);
        xhr.setRequestHeader("Content-Type", "application/octet-stream");
      } else {
        xhr.setRequestHeader("Content-Type", up.content_type); // a signed bucket URL names the type
      }
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) show(up.filename, "Uploading", e.loaded, e.total, `Uploading… ${Math.floor((100 * e.loaded) / e.total)}%`);
      });
      xhr.addEventListener("load", () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve();
        else {
          let text = `${xhr.status} ${xhr.statusText}`;
          try {
            text = JSON.parse(xhr.responseText).error || text;
          } catch {
            // not JSON
          }
          reject(new Error(text));
        }
      });
      xhr.addEventListener("error", () => reject(new Error("the upload was interrupted")));
      xhr.addEventListener("abort", () => reject(new Error("the upload was cancelled")));
      xhr.send(file);
    });
  }

  input.addEventListener("change", async () => {
    const file = input.files && input.files[0];
    input.value = "";
    if (!file) return;
    show(file.name, "Uploading", 0, 1, "Starting the upload…");
    try {
      const up = await api("/v1/uploads", {
        method: "POST",
        body: { filename: file.name, size: file.size, content_type: file.type || "video/mp4" },
      });
      const who = await session();
      await send(up, file, who && who.csrf_token);
      current = { upload: up, asset_id: null };
      show(up.filename, "Indexing", 0, 1, "Uploaded. Waiting for indexing to start…");
      changed();
    } catch (err) {
      fail(file.name, `Upload failed: ${err.message || describe(err)}`);
    } finally {
      xhr = null;
    }
  });

  // Each refresh of the asset list: the uploaded file's upload state and its asset's progress.
  // True when the upload ended here (indexed or failed).
  async function follow(assets) {
    if (!current) return false;
    const { upload } = current;
    let doc;
    try {
      doc = await api(`/v1/uploads/${upload.upload_id}`);
    } catch (err) {
      fail(upload.filename, describe(err));
      return true;
    }
    const asset = assets.find((a) => a.asset_id === doc.asset_id) || assets.find((a) => a.source === doc.source);
    if (doc.status === "ready") {
      show(upload.filename, "Indexed", 1, 1, "Indexed: ready to search.");
      current = null;
      return true;
    }
    if (doc.status === "failed") {
      fail(upload.filename, `Indexing failed: ${doc.error || (asset && asset.error) || "no reason was recorded"}`);
      return true;
    }
    if (asset && asset.progress) {
      const p = asset.progress;
      show(upload.filename, "Indexing", p.done, p.total, `Indexing… ${p.done} of ${p.total} steps`);
    }
    return false;
  }

  return {
    node,
    panel,
    follow,
    busy: () => current !== null,
    abort: () => {
      if (xhr) xhr.abort();
    },
  };
}
