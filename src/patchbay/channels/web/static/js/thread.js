// The conversation: the chat's current branch, each answer's branch controls and actions, and the
// answer being written.

import { el, formatSize, icon } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const STATUS_NOTES = {
  cancelled: "Stopped",
  queued: "Waiting…",
  streaming: "Being written…",
};

export function renderThread(container, messages, { busy }) {
  container.replaceChildren(...messages.map((message) => messageView(message, busy)));
}

function messageView(message, busy) {
  const bubble = el("div", { cls: "bubble" });
  if (message.role === "assistant") renderMarkdown(bubble, message.content);
  else bubble.textContent = message.content;
  const node = el("article", {
    cls: `msg ${message.role}`,
    attrs: { "data-id": message.id, "data-status": message.status },
  });
  node.append(bubble);
  if (message.attachments && message.attachments.length) node.append(filesView(message.attachments));
  const meta = metaView(message, busy);
  if (meta.childElementCount) node.append(meta);
  return node;
}

function filesView(files) {
  return el(
    "ul",
    { cls: "files" },
    files.map((file) =>
      el("li", { cls: "file-chip", attrs: { title: file.media_type } }, [
        icon("file"),
        el("span", { text: file.filename || file.media_type }),
        el("span", { cls: "muted", text: formatSize(file.size) }),
      ]),
    ),
  );
}

function branchView(message, busy) {
  const siblings = message.sibling_ids || [];
  const at = siblings.indexOf(message.id);
  if (siblings.length < 2 || at < 0) return null;
  const step = (to, label, glyph) =>
    el("button", {
      text: glyph,
      attrs: {
        type: "button",
        "aria-label": label,
        "data-action": "branch",
        "data-target": siblings[to],
        disabled: busy || to < 0 || to >= siblings.length,
      },
    });
  return el("span", { cls: "branches", attrs: { role: "group", "aria-label": "Answers" } }, [
    step(at - 1, "Previous answer", "‹"),
    el("span", { cls: "branch-count", text: `${at + 1} / ${siblings.length}` }),
    step(at + 1, "Next answer", "›"),
  ]);
}

function metaView(message, busy) {
  const meta = el("div", { cls: "meta" });
  const branches = branchView(message, busy);
  if (branches) meta.append(branches);
  if (message.role !== "assistant") return meta;
  if (message.status === "failed") {
    meta.append(el("span", { cls: "state-failed", text: `The answer failed: ${message.error || "unknown error"}` }));
  } else if (STATUS_NOTES[message.status]) {
    meta.append(el("span", { cls: "state-note", text: STATUS_NOTES[message.status] }));
  }
  if (message.model) meta.append(el("span", { text: message.model }));
  if (message.status === "queued" || message.status === "streaming") return meta;
  meta.append(
    el("button", {
      text: "Regenerate",
      attrs: { type: "button", "data-action": "regenerate", "data-id": message.id, disabled: busy },
    }),
  );
  return meta;
}

// The answer `job` is writing, shown as it grows.
export function showAnswer(container, job) {
  const node = container.querySelector(`article[data-id="${CSS.escape(job.messageId)}"]`);
  if (!node) return;
  const bubble = node.querySelector(".bubble");
  const writing = job.state === "queued" || job.state === "running";
  if (job.text) renderMarkdown(bubble, job.text);
  else if (job.state === "queued") bubble.textContent = "Thinking…";
  bubble.classList.toggle("typing", writing);
  const note = node.querySelector(".state-note");
  if (note) note.textContent = STATUS_NOTES[job.state === "running" ? "streaming" : job.state] || "";
}

// What the person just sent, shown at once while the core takes the turn.
export function showPending(container, text, files) {
  const question = el("article", { cls: "msg user pending" }, [el("div", { cls: "bubble", text })]);
  if (files.length) {
    question.append(
      filesView(files.map((file) => ({ filename: file.name, media_type: file.type, size: file.size }))),
    );
  }
  const answer = el("article", { cls: "msg assistant pending" }, [
    el("div", { cls: "bubble typing", text: "" }),
  ]);
  container.append(question, answer);
  return [question, answer];
}
