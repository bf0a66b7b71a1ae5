// What to tell a person when something goes wrong: plainly, and what to do next.

import { UNREACHABLE } from "./api.js";

export const BUSY = "patchbay is busy right now; try again in a moment.";
export const CORE_AWAY = "patchbay's core is not answering (it may be restarting); try again in a moment.";
const GATEWAY = new Set([502, 503, 504]);

export function explain(error) {
  if (!error) return "Something went wrong; try again.";
  if (error.status === 429) return BUSY;
  // The channel answers for a core it cannot reach; a proxy in front of the channel answers for
  // a channel it cannot reach, in its own words (not patchbay's JSON, so its code is `http_…`).
  if (error.code === "core_unavailable") return CORE_AWAY;
  const proxied = GATEWAY.has(error.status) && error.code === `http_${error.status}`;
  if (proxied || error.code === "network") return UNREACHABLE;
  if (error.status === 503) return BUSY;
  const message = String(error.message || "Something went wrong; try again.");
  const sentence = message.charAt(0).toUpperCase() + message.slice(1);
  if (error.status === 413) return `That is too large to send. ${sentence}`;
  return sentence;
}

export const isSignedOut = (error) => Boolean(error) && error.status === 401;

// patchbay, or its core, out of reach for now (restarting, most likely): worth asking again.
export const isAway = (error) => Boolean(error) && (error.status === 0 || GATEWAY.has(error.status));
