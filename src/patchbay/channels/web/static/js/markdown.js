// Answers as Markdown: parsed by marked with raw HTML shown as text, then sanitized by DOMPurify
// before anything reaches the page.

import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (char) => ESCAPES[char]);

// HTML a model writes is shown, never interpreted (and never parsed with its event handlers, which
// Chrome reports as CSP violations even inside DOMPurify's inert document).
const markdown = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: { html: ({ text, block }) => (block ? `<p>${escapeHtml(text)}</p>` : escapeHtml(text)) },
});

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe"],
  FORBID_ATTR: ["style"], // the page's CSP allows no inline styles
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
  // Only images from this page or inline data load (CSP); others show their alt text and address.
  if (node.tagName === "IMG") {
    const src = node.getAttribute("src") || "";
    if (!/^(data:image\/|blob:|\/(?!\/))/.test(src)) {
      node.removeAttribute("src");
      node.setAttribute("title", src);
    }
  }
});

export function renderMarkdown(target, text) {
  target.replaceChildren(DOMPurify.sanitize(markdown.parse(text || ""), PURIFY));
  for (const pre of target.querySelectorAll("pre")) {
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.dataset.action = "copy";
    pre.append(copy);
  }
}
