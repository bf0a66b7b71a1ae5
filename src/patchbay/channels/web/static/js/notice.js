// The notice above the conversation: what went wrong, in plain words, until dismissed.

import { byId } from "./dom.js";

export function notify(text) {
  byId("notice-text").textContent = text;
  byId("notice").hidden = false;
}

export function clearNotice() {
  byId("notice").hidden = true;
}
