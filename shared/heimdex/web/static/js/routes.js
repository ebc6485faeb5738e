// The pages of the app. A page is a module exporting
//   render(main, {params, query, navigate}) -> optional cleanup function (called on leaving the page)
// and a route here: `pattern` is matched against location.pathname, its groups become `params`;
// `nav` (a label) and `href` put it in the header. To add a page: write js/<page>.js and add one line below
// (the server already answers index.html for /library, /people and /people/<id>; other paths need
// a line in heimdex/api/web.py PAGES too).
export const routes = [
  { pattern: /^\/$/, load: () => import("./search.js"), nav: "Search", href: "/", title: "Search" },
  { pattern: /^\/watch\/([0-9a-f]{1,64})$/, load: () => import("./watch.js"), title: "Watch" },
  { pattern: /^\/library$/, load: () => import("./library.js"), nav: "Library", href: "/library", title: "Library" },
  { pattern: /^\/people$/, load: () => import("./people.js"), nav: "People", href: "/people", title: "People" },
  { pattern: /^\/people\/(\d{1,18})$/, load: () => import("./people.js"), title: "Person" },
];
