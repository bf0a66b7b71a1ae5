// A regenerate the core has not confirmed taking: the answer asked for again, the model and the id
// it went with (its `delivery_id`), also kept in the tab's sessionStorage. Asked again for the same
// answer and model, after a reload too, it goes with the same id, so one whose answer was lost on
// the way is answered once; and a reload asks the core whether it took it, to follow its answer.

import { newMessageId } from "./composer.js";

const STORAGE_KEY = "patchbay.regenerate";
// Regenerates are kept among the core's deliveries apart from messages, under this name.
export const REGENERATES = "web:regenerate";

let pending = null;

// The regenerate left unconfirmed before the page was reloaded (null when there is none).
export function restoreRegenerate() {
  try {
    const kept = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    pending = kept && typeof kept.id === "string" && typeof kept.messageId === "string" ? kept : null;
  } catch {
    pending = null;
  }
  return pending;
}

export const pendingRegenerate = () => pending;

// The regenerate of `messageId` with `model` about to be asked for: the unconfirmed one if it is
// the same, else a new one.
export function regenerateOf(messageId, model) {
  if (!pending || pending.messageId !== messageId || pending.model !== model) {
    pending = { id: newMessageId(), messageId, model };
  }
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(pending));
  } catch {
    // storage full or refused: kept in this page only
  }
  return pending;
}

// Confirmed (its answer is followed now), or signing out.
export function forgetRegenerate() {
  pending = null;
  sessionStorage.removeItem(STORAGE_KEY);
}
