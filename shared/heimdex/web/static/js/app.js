// The shell: session check, header navigation, client-side routing (history API). Pages live in
// their own modules (routes.js); links inside <main> with a same-origin path are routed here
// without a reload.
import { SIGNED_OUT, describe, session, signOut } from "./api.js";
import { h, message } from "./dom.js";
import { routes } from "./routes.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const account = document.getElementById("account");
const notice = document.getElementById("notice");
let leave = null;
let current = 0;

function match(pathname) {
  for (const route of routes) {
    const m = route.pattern.exec(pathname);
    if (m) return { route, params: m.slice(1).map(decodeURIComponent) };
  }
  return null;
}

export function navigate(href, { replace = false } = {}) {
  const target = new URL(href, window.location.href);
  if (replace) window.history.replaceState({}, "", target);
  else window.history.pushState({}, "", target);
  render();
}

function drawNav() {
  nav.replaceChildren(
    ...routes
      .filter((r) => r.nav)
      .map((r) => {
        const here = match(window.location.pathname)?.route === r;
        return h("li", {}, h("a", { href: r.href, "aria-current": here ? "page" : null }, r.nav));
      }),
  );
}

function signedOutPage(reason) {
  if (leave) leave();
  leave = null;
  account.replaceChildren();
  main.replaceChildren(
    h(
      "section",
      { class: "signin" },
      h("h1", {}, "Sign in to Heimdex"),
      h("p", {}, reason || "You are not signed in."),
      h(
        "p",
        {},
        "Open the sign-in link that ",
        h("code", {}, "heimdex serve"),
        " printed when it started, or print a new one with ",
        h("code", {}, "heimdex token --login --org ORG"),
        ".",
      ),
      h("div", { id: "google-signin" }),
    ),
  );
  document.title = "Sign in · Heimdex";
  import("./google.js").then((g) => g.offer(document.getElementById("google-signin"))).catch(() => {});
}

async function render() {
  const serial = ++current;
  if (leave) {
    try {
      leave();
    } catch (err) {
      console.warn(err);
    }
    leave = null;
  }
  drawNav();
  const found = match(window.location.pathname);
  if (!found) {
    main.replaceChildren(h("h1", {}, "Not found"), message("There is no page at this address.", "error"));
    return;
  }
  document.title = `${found.route.title} · Heimdex`;
  try {
    const page = await found.route.load();
    if (serial !== current) return;
    const query = new URLSearchParams(window.location.search);
    leave = (await page.render(main, { params: found.params, query, navigate })) || null;
  } catch (err) {
    if (serial !== current) return;
    main.replaceChildren(h("h1", {}, found.route.title), message(describe(err) || String(err), "error"));
  }
}

function showAccount(who) {
  account.replaceChildren(
    h("span", { class: "org" }, who.org_id),
    h(
      "button",
      {
        type: "button",
        class: "link",
        onclick: async () => {
          try {
            await signOut();
          } finally {
            signedOutPage("You signed out.");
          }
        },
      },
      "Sign out",
    ),
  );
}

export function notify(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a");
  if (!a || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || a.target || a.hasAttribute("download")) return;
  const target = new URL(a.href, window.location.href);
  if (target.origin !== window.location.origin || !match(target.pathname)) return;
  event.preventDefault();
  navigate(target.href);
});

window.addEventListener("popstate", render);
window.addEventListener(SIGNED_OUT, (event) => signedOutPage(event.detail));

async function start() {
  let who = null;
  try {
    who = await session();
  } catch (err) {
    main.replaceChildren(message(describe(err), "error"));
    return;
  }
  if (!who) {
    signedOutPage();
    return;
  }
  showAccount(who);
  await render();
}

start();
