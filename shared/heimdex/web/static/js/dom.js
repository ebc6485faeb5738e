// Small DOM helpers every page uses. Server text only ever becomes text nodes (never innerHTML).

// h("a", {href: "/x", class: "c", onclick: fn}, "text", child...) -> an element.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// 75.4 -> "1:15", 3700 -> "1:01:40".
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

// The last part of a path or URL: what a person calls the file.
export function fileName(source) {
  const parts = String(source).split(/[\\/]/);
  return parts[parts.length - 1] || String(source);
}

// A person as a chip (a link to their page).
export function personChip(person) {
  const label = person.name || `Person ${person.id}`;
  return h("a", { class: "chip", href: `/people/${person.id}` }, label);
}

export function message(text, kind = "info") {
  return h("p", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}
