// The answer being generated: followed as it streams, kept in sessionStorage so a reload resumes it
// (`GET /api/jobs/{id}/events` with `Last-Event-ID`), and stopped on request.

import { ApiError, getJson, id, request } from "./api.js";
import { isAway } from "./errors.js";
import { readEvents } from "./sse.js";

const STORAGE_KEY = "patchbay.job";
const TERMINAL = new Set(["done", "failed", "cancelled"]);
const SAVE_EVERY_MS = 150;
// A core (or this channel) that restarts is away for seconds: resume, waiting longer each time,
// until it has been out of reach this long.
const GIVE_UP_MS = 60_000;
const MAX_WAIT_MS = 4_000;

export const STREAM = { Accept: "text/event-stream" };

export function savedJob() {
  try {
    const job = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    return job && job.jobId && job.chatId ? job : null;
  } catch {
    return null;
  }
}

export function forgetJob() {
  sessionStorage.removeItem(STORAGE_KEY);
}

// Kept from the moment the core names the job, so that a reload follows it on from there.
export function keepJob(job) {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(job));
}

function newJob(jobId, chatId, messageId) {
  return { jobId, chatId, messageId, lastEventId: 0, text: "", state: "queued", error: null };
}

// A new job from the headers of `POST /api/turns` or `…/regenerate`.
export function jobFrom(response) {
  const header = (name) => response.headers.get(name);
  return newJob(
    header("X-Patchbay-Job-Id"),
    header("X-Patchbay-Chat-Id"),
    header("X-Patchbay-Message-Id"),
  );
}

// The job of a message the core took before (it answers a message sent again, whose first
// answer was lost on the way, with `duplicate_delivery` naming that job), followed from its start.
export async function takenJob(jobId, signal) {
  const job = await getJson(`/api/jobs/${id(jobId)}`, { signal });
  return newJob(job.id, job.chat_id, job.message_id);
}

function apply(job, event) {
  if (Number.isFinite(event.id)) job.lastEventId = event.id;
  const data = event.data || {};
  if (event.type === "running") {
    job.state = "running";
    job.text += data.delta || "";
  } else if (event.type === "restarted") {
    job.text = ""; // another worker starts the answer again from its beginning
  } else if (event.type === "queued") {
    job.state = "queued";
  } else if (TERMINAL.has(event.type)) {
    job.state = event.type;
    if (typeof data.content === "string") job.text = data.content;
    job.error = data.error ? data.error.message : null;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function resume(job, signal) {
  return request(`/api/jobs/${id(job.jobId)}/events`, {
    headers: { ...STREAM, "Last-Event-ID": String(job.lastEventId) },
    signal,
  });
}

// Follow `job` to its end: `response` first when there is one, then, whenever a stream breaks
// off, again from the last event seen. `onUpdate(job)` runs after each event.
export async function follow(job, response, onUpdate, signal) {
  // Saved every SAVE_EVERY_MS while events come, the job is saved once more as the page is left
  // (a reload): events of a burst between two saves (a stream held while the chat loaded) would
  // be asked for again, and the answer shown from nothing meanwhile.
  const keep = () => signal.aborted || keepJob(job);
  addEventListener("pagehide", keep);
  try {
    return await followOn(job, response, onUpdate, signal);
  } finally {
    removeEventListener("pagehide", keep);
  }
}

async function followOn(job, response, onUpdate, signal) {
  keepJob(job);
  let saved = Date.now();
  let reached = Date.now(); // when the core last answered: a stream opened, or an event
  let failures = 0;
  for (;;) {
    try {
      const stream = response || (await resume(job, signal));
      response = null;
      reached = Date.now();
      for await (const event of readEvents(stream)) {
        apply(job, event);
        failures = 0;
        reached = Date.now();
        if (TERMINAL.has(event.type)) {
          forgetJob();
          onUpdate(job);
          return job;
        }
        if (Date.now() - saved > SAVE_EVERY_MS) {
          keepJob(job);
          saved = Date.now();
        }
        onUpdate(job);
      }
    } catch (error) {
      if (error.name === "AbortError") throw error;
      if (error instanceof ApiError && !isAway(error)) throw error;
      // the stream broke off, or the core is briefly away: resume below
    }
    response = null;
    if (signal.aborted) throw new DOMException("no longer followed", "AbortError");
    keepJob(job);
    failures += 1;
    if (Date.now() - reached > GIVE_UP_MS) {
      throw new ApiError(0, "stream_lost", "The answer's stream broke off; reload the page to pick it up.");
    }
    await sleep(Math.min(250 * 2 ** (failures - 1), MAX_WAIT_MS));
  }
}

export function stopJob(job) {
  return request(`/api/jobs/${id(job.jobId)}`, { method: "DELETE" });
}
