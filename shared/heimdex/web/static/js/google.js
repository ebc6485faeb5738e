// Cloud sign-in with Google, offered only when the deployment configures it (GET /web/config.json):
// Google Identity Services gives a Google ID token, Identity Platform's signInWithIdp exchanges it
// for an Identity Platform ID token (which carries the organisation claim the API verifies), and
// POST /v1/session turns that into the same session cookie the embedded sign-in link sets.
const GIS = "https://accounts.google.com/gsi/client";

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.async = true;
    s.onload = resolve;
    s.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(s);
  });
}

async function exchange(cfg, googleIdToken) {
  const resp = await fetch(`https://identitytoolkit.googleapis.com/v1/accounts:signInWithIdp?key=${encodeURIComponent(cfg.api_key)}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      postBody: `id_token=${encodeURIComponent(googleIdToken)}&providerId=google.com`,
      requestUri: window.location.origin,
      returnSecureToken: true,
    }),
  });
  if (!resp.ok) throw new Error("Identity Platform refused the Google sign-in");
  const { idToken } = await resp.json();
  const made = await fetch("/v1/session", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id_token: idToken }),
  });
  if (!made.ok) {
    const body = await made.json().catch(() => ({}));
    throw new Error(body.error || "the server refused the sign-in");
  }
}

export async function offer(slot) {
  if (!slot) return;
  const cfg = (await (await fetch("/web/config.json")).json()).google;
  if (!cfg) return;
  await loadScript(GIS);
  const status = document.createElement("p");
  status.setAttribute("role", "status");
  window.google.accounts.id.initialize({
    client_id: cfg.client_id,
    callback: async ({ credential }) => {
      try {
        await exchange(cfg, credential);
        window.location.assign("/");
      } catch (err) {
        status.textContent = String(err.message || err);
      }
    },
  });
  const button = document.createElement("div");
  slot.append(button, status);
  window.google.accounts.id.renderButton(button, { theme: "outline", size: "large" });
}
