// The one way pages talk to the /v1 API: same-origin cookie credentials, the CSRF header on every
// state change, the API's {error, code} turned into an ApiError, and a 401 announced to the shell
// (which shows the sign-in message) instead of a broken page.

let csrfToken = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

export const SIGNED_OUT = "heimdex:signed-out";

function url(path, params) {
  const u = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (v !== undefined && v !== null && v !== "") u.searchParams.append(key, String(v));
    }
  }
  return u.pathname + u.search;
}

async function failure(resp) {
  let code = "http_" + resp.status;
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && typeof body.error === "string") {
      message = body.error;
      code = body.code || code;
    }
  } catch {
    // not JSON: keep the status line
  }
  if (resp.status === 401) window.dispatchEvent(new CustomEvent(SIGNED_OUT, { detail: message }));
  return new ApiError(resp.status, code, message);
}

// fetch `path` (a /v1 path); `params` become the query string (arrays repeat the key); `body` is
// sent as JSON. Resolves to the parsed JSON (or the text with {text: true}); rejects with ApiError.
export async function api(path, { method = "GET", params, body, text = false, signal } = {}) {
  const headers = { Accept: text ? "text/plain" : "application/json" };
  if (method !== "GET" && method !== "HEAD") {
    if (csrfToken === null) await session();
    if (csrfToken) headers["X-CSRF-Token"] = csrfToken;
  }
  const init = { method, headers, credentials: "same-origin", signal };
  if (body !== undefined) {
    if (body instanceof FormData || body instanceof Blob) {
      init.body = body;
    } else {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  const resp = await fetch(url(path, params), init);
  if (!resp.ok) throw await failure(resp);
  if (resp.status === 204) return null;
  return text ? resp.text() : resp.json();
}

// The signed-in session: {org_id, csrf_token, expires_at}, or null when not signed in.
export async function session() {
  const config = await fetch("/web/config.json", { credentials: "same-origin" });
  if (config.ok && !(await config.json()).signed_in) {
    csrfToken = "";
    return null;
  }
  const resp = await fetch("/v1/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (resp.status === 401) {
    csrfToken = "";
    return null;
  }
  if (!resp.ok) throw await failure(resp);
  const doc = await resp.json();
  csrfToken = doc.csrf_token || "";
  return doc;
}

export async function signOut() {
  await api("/v1/session", { method: "DELETE" });
  csrfToken = null;
}

// A message for any error a page shows (ApiError or a network failure).
export function describe(err) {
  if (err instanceof ApiError) return err.message;
  if (err && err.name === "AbortError") return "";
  return "The server could not be reached. Is `heimdex serve` still running?";
}
