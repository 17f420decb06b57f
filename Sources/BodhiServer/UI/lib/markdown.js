// A small Markdown renderer for model replies. It builds DOM nodes and never parses HTML, so
// whatever a model writes (<script>, <img onerror>, javascript: links) stays text.

import { copyText, h } from "./dom.js";

// A backtick fence's info string holds no backtick (CommonMark), so ```code``` on one line is inline code.
const fencePattern = /^\s{0,3}(`{3,}(?=[^`]*$)|~{3,})\s*([\w+#.-]*)/;
// A closing run of # counts only after a space: "## Using C#" keeps its #.
const headingPattern = /^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const rulePattern = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const quotePattern = /^\s{0,3}>\s?/;
const listPattern = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const tableRulePattern = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

/** The rendered Markdown of `text`, as a fragment. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  fragment.append(...blocks(String(text ?? "").replace(/\r\n?/g, "\n").split("\n")));
  return fragment;
}

/** A table starts with a row of cells over a rule of dashes. */
function startsTable(line, next) {
  return line.includes("|") && next !== undefined && tableRulePattern.test(next) && next.includes("-");
}

function startsBlock(line, next) {
  return fencePattern.test(line) || headingPattern.test(line) || rulePattern.test(line) || quotePattern.test(line)
    || listPattern.test(line) || startsTable(line, next);
}

function blocks(lines) {
  const nodes = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let match;
    if (!line.trim()) { i += 1; continue; }
    if ((match = fencePattern.exec(line))) {
      const marker = match[1];
      const code = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(marker)) { code.push(lines[i]); i += 1; }
      i += 1;
      nodes.push(codeBlock(code.join("\n"), match[2]));
    } else if ((match = headingPattern.exec(line))) {
      nodes.push(h(`h${Math.min(6, match[1].length + 2)}`, {}, inline(match[2])));
      i += 1;
    } else if (rulePattern.test(line)) {
      nodes.push(h("hr"));
      i += 1;
    } else if (quotePattern.test(line)) {
      const quoted = [];
      while (i < lines.length && quotePattern.test(lines[i])) { quoted.push(lines[i].replace(quotePattern, "")); i += 1; }
      nodes.push(h("blockquote", {}, blocks(quoted)));
    } else if ((match = listPattern.exec(line))) {
      i = list(lines, i, match, nodes);
    } else if (startsTable(line, lines[i + 1])) {
      const rows = [line];
      i += 2;
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) { rows.push(lines[i]); i += 1; }
      nodes.push(table(rows));
    } else {
      const paragraph = [line];
      i += 1;
      while (i < lines.length && lines[i].trim() && !startsBlock(lines[i], lines[i + 1])) { paragraph.push(lines[i]); i += 1; }
      const children = [];
      paragraph.forEach((text, index) => {
        if (index > 0) children.push(h("br"));
        children.push(inline(text.trim()));
      });
      nodes.push(h("p", {}, children));
    }
  }
  return nodes;
}

/** A list starting at `lines[start]`; items keep their indented continuation lines, which may hold nested lists. */
function list(lines, start, first, nodes) {
  const ordered = /\d/.test(first[2]);
  const indent = first[1].length;
  const items = [];
  let i = start;
  while (i < lines.length) {
    const match = listPattern.exec(lines[i]);
    if (!match || match[1].length !== indent || /\d/.test(match[2]) !== ordered) break;
    const content = [match[3]];
    i += 1;
    while (i < lines.length) {
      const next = lines[i];
      if (!next.trim()) {
        // A blank line ends the list unless the list (or this item) goes on after it.
        const following = lines[i + 1] ?? "";
        const more = listPattern.exec(following);
        if ((more && more[1].length >= indent) || (following.trim() && leading(following) > indent)) { content.push(""); i += 1; continue; }
        break;
      }
      const nested = listPattern.exec(next);
      if (nested && nested[1].length <= indent) break;
      if (!nested && leading(next) <= indent && startsBlock(next, lines[i + 1])) break;
      content.push(next.slice(Math.min(leading(next), indent + 2)));
      i += 1;
    }
    items.push(content);
  }
  const startNumber = ordered ? parseInt(first[2], 10) : null;
  nodes.push(h(ordered ? "ol" : "ul", { start: startNumber && startNumber !== 1 ? startNumber : null },
    items.map((content) => {
      const inner = blocks(content);
      // A tight item is its paragraph's text, not a paragraph.
      if (inner.length >= 1 && inner[0].tagName === "P" && !content.includes("")) {
        return h("li", {}, [...inner[0].childNodes], inner.slice(1));
      }
      return h("li", {}, inner);
    })));
  return i;
}

const leading = (line) => line.length - line.trimStart().length;

function table(rows) {
  const cells = (row) => row.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((cell) => cell.trim());
  const [head, ...body] = rows;
  return h("div", { class: "table-scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, cells(head).map((cell) => h("th", { scope: "col" }, inline(cell))))),
    h("tbody", {}, body.map((row) => h("tr", {}, cells(row).map((cell) => h("td", {}, inline(cell))))))));
}

function codeBlock(code, language) {
  const copy = h("button", { type: "button", class: "small ghost", "aria-label": "Copy code" }, "Copy");
  copy.addEventListener("click", () => copyText(code, "Code copied"));
  return h("div", { class: "code-block" },
    h("div", { class: "code-head" }, h("span", {}, language || "code"), copy),
    h("pre", {}, h("code", { class: language ? `language-${language}` : null }, code)));
}

const inlineRules = [
  { pattern: /^`([^`]+)`/, make: (m) => h("code", {}, m[1]) },
  { pattern: /^\*\*(?=\S)([\s\S]*?\S)\*\*/, make: (m) => h("strong", {}, inline(m[1])) },
  { pattern: /^__(?=\S)([\s\S]*?\S)__(?!\w)/, make: (m) => h("strong", {}, inline(m[1])) },
  { pattern: /^~~(?=\S)([\s\S]*?\S)~~/, make: (m) => h("del", {}, inline(m[1])) },
  { pattern: /^\*(?=[^\s*])([^*]*?[^\s*])\*/, make: (m) => h("em", {}, inline(m[1])) },
  { pattern: /^_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/, make: (m) => h("em", {}, inline(m[1])), wordStart: true },
  { pattern: /^\[([^\]]+)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/, make: (m) => link(m[2], inline(m[1]), m[0]) },
  { pattern: /^(?:https?:\/\/|mailto:)[^\s<>()]*[^\s<>().,;:!?'"*_]/, make: (m) => link(m[0], m[0], m[0]) },
];

/** Inline Markdown in `text`: code, emphasis, strike-through, links. */
function inline(text) {
  const nodes = [];
  let plain = "";
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const previous = i > 0 ? text[i - 1] : " ";
    let matched = null;
    if ("`*_~[hm".includes(text[i])) {
      for (const rule of inlineRules) {
        if (rule.wordStart && /\w/.test(previous)) continue;
        const match = rule.pattern.exec(rest);
        if (match) { matched = { node: rule.make(match), length: match[0].length }; break; }
      }
    }
    if (matched) {
      if (plain) { nodes.push(plain); plain = ""; }
      nodes.push(matched.node);
      i += matched.length;
    } else if (text[i] === "\\" && i + 1 < text.length && /[\\`*_~[\]()#>|-]/.test(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
    } else {
      plain += text[i];
      i += 1;
    }
  }
  if (plain) nodes.push(plain);
  return nodes;
}

/** A link when the address is http(s) or mailto; otherwise the original text, inert. */
function link(address, content, original) {
  let url;
  try { url = new URL(address, window.location.origin); } catch { return original; }
  if (!["http:", "https:", "mailto:"].includes(url.protocol)) return original;
  return h("a", { href: url.href, target: "_blank", rel: "noopener noreferrer nofollow" }, content);
}
