// The chat list: newest first, filtered by the search box, each with rename and delete.

import { el, icon } from "./dom.js";

export const chatTitle = (chat) => (chat && chat.title) || "Untitled chat";

export function renderChats(list, chats, { currentId, filter }) {
  const needle = (filter || "").trim().toLowerCase();
  const shown = needle ? chats.filter((chat) => chatTitle(chat).toLowerCase().includes(needle)) : chats;
  list.replaceChildren(...shown.map((chat) => chatView(chat, chat.id === currentId)));
  return shown.length;
}

function chatView(chat, current) {
  const title = chatTitle(chat);
  const action = (name, label, glyph) =>
    el("button", {
      attrs: { type: "button", class: "icon", "aria-label": `${label} ${title}`, title: label, "data-action": name, "data-id": chat.id },
    }, [icon(glyph)]);
  return el("li", { cls: current ? "chat-item current" : "chat-item", attrs: { "data-id": chat.id } }, [
    el("button", {
      cls: "chat-open",
      attrs: { type: "button", "data-action": "open", "data-id": chat.id, "aria-current": current ? "page" : null, title },
    }, [el("span", { text: title })]),
    el("span", { cls: "chat-actions" }, [action("rename", "Rename", "pencil"), action("delete", "Delete", "trash")]),
  ]);
}
