// The web chat page: signing in, the chat list, the conversation and the answer being written.

import * as api from "./api.js";
import { chatTitle, renderChats } from "./chats.js";
import { Composer } from "./composer.js";
import { byId } from "./dom.js";
import { explain, isAway, isSignedOut } from "./errors.js";
import { STREAM, follow, forgetJob, jobFrom, keepJob, savedJob, stopJob, takenJob } from "./generation.js";
import { chosenModel, loadModels, rememberModel } from "./models.js";
import { clearNotice, notify } from "./notice.js";
import { REGENERATES, forgetRegenerate, pendingRegenerate, regenerateOf, restoreRegenerate } from "./regenerates.js";
import { renderThread, showAnswer, showPending } from "./thread.js";

// What the page holds of the signed-in person; all of it goes on signing out.
const blank = () => ({
  user: null, chats: [], chatId: null, messages: [], job: null, sending: false, stopAsked: false,
});
const state = blank();
const busy = () => Boolean(state.job) || state.sending; // an answer followed, or a message sent
let following = new AbortController(); // aborted on sign-out: stops reading the answer's stream
const messagesBox = byId("messages");
let composer;
let restored = null; // a message a reload found unconfirmed, until the person is told
let frame = 0;
let watching = 0; // a timer: looks again at an answer that is written elsewhere (another tab)
const CHATS_PAGE = 200;
const WATCH_MS = 1500;
const AWAY_RETRY_MS = 5000; // asked again at most this long apart while patchbay is out of reach

// ---- notices and errors

function fail(error) {
  if (error && error.name === "AbortError") return;
  if (isSignedOut(error)) {
    leave("Your key is no longer accepted; sign in again.");
    return;
  }
  notify(explain(error));
}

// A click or submit handler that reports its failures instead of leaving them unhandled.
const guarded = (handler) => (...args) => Promise.resolve(handler(...args)).catch(fail);

// For what is loaded again shortly anyway: only a key no longer accepted is worth a word.
function unlessSignedOut(error) {
  if (isSignedOut(error)) fail(error);
}

// ---- signing in and out

function showSignIn(message) {
  byId("app").hidden = true;
  byId("away").hidden = true;
  byId("signin").hidden = false;
  const error = byId("signin-error");
  error.textContent = message || "";
  error.hidden = !message;
  byId("key").focus();
}

async function submitKey(event) {
  event.preventDefault();
  const input = byId("key");
  const key = input.value.trim();
  if (!key) {
    showSignIn("Enter your API key.");
    return;
  }
  const button = event.submitter || byId("signin-form").querySelector("button");
  button.disabled = true;
  try {
    const { user } = await api.signIn(key);
    input.value = "";
    await enter(user);
  } catch (error) {
    showSignIn(error.status === 401 ? "That key was not accepted. Check it and try again." : explain(error));
  } finally {
    button.disabled = false;
  }
}

function leave(message) {
  following.abort();
  following = new AbortController();
  forgetJob();
  Object.assign(state, blank());
  forgetRegenerate();
  messagesBox.replaceChildren();
  clearNotice();
  history.replaceState(null, "", location.pathname);
  showSignIn(message);
}

// Only a sign-out the channel took is shown as one: until then the key stays in its cookie.
// What was in the box goes too (a key that stops working leaves it, for the same person).
async function signOut() {
  await api.signOut();
  composer.clear();
  leave("");
}

async function enter(user) {
  state.user = user;
  byId("signin").hidden = true;
  byId("away").hidden = true;
  byId("app").hidden = false;
  byId("who").textContent = user.name;
  // What a reload left to pick up, taken before anything is awaited: the box is there at once,
  // and a message sent meanwhile keeps its own job, which this page follows already.
  const left = { job: savedJob(), unsent: restored, asked: pendingRegenerate() };
  restored = null;
  await Promise.all([loadModels(), loadChats()]);
  await pickUp(left);
}

// Follow on the answer being written when the page was left: its job, or the turn of a message,
// or of a regenerate, the core took though the page did not hear back.
async function pickUp({ job, unsent, asked }) {
  const arrived = unsent && (await arrivedJob("web", unsent.id));
  const regenerated = !job && !arrived && asked && (await arrivedJob(REGENERATES, asked.id));
  if (busy()) return; // something sent meanwhile goes on, and is the person's latest
  if (arrived) {
    composer.taken([]); // it is the chat's now, not the box's
    if (!job || job.jobId !== arrived.jobId) job = arrived;
  }
  if (regenerated) {
    forgetRegenerate(); // taken: its answer is followed below
    job = regenerated;
  }
  const chatId = job ? job.chatId : unsent ? unsent.chatId : chatInAddress();
  if (chatId) await openChat(chatId);
  else newChat();
  if (busy()) return;
  if (unsent && !arrived) notify(unsentNote(unsent));
  // An answer that was being written when the page was left: follow it on (a job the core no
  // longer knows is simply dropped).
  if (job && job.chatId === state.chatId) run(job, null).catch((error) => error.status !== 404 && fail(error));
  else if (job) forgetJob();
  composer.prompt.focus();
}

// The job of the turn a message (or a regenerate) sent before the page was reloaded became, when
// the core took it after all (the answer to its send was lost); null when it did not, or cannot
// say now.
async function arrivedJob(channel, deliveryId) {
  const query = `channel=${api.id(channel)}&delivery_id=${api.id(deliveryId)}`;
  try {
    const turn = await api.getJson(`/api/deliveries/turn?${query}`);
    return await takenJob(turn.job_id, following.signal);
  } catch (error) {
    if (isSignedOut(error)) throw error;
    return null;
  }
}

// A message sent before the page was reloaded may not have reached the core: it is back in the
// box, not shown as sent, and sent again with its id it is stored once whichever it was.
function unsentNote(message) {
  const files = message.files.map((file) => file.name).join(", ");
  const again = files ? ` Files are not kept over a reload: attach ${files} again.` : "";
  return `Your last message may not have been sent, so it is back in the box: send it again (it is not stored twice).${again}`;
}

// ---- chats

function chatInAddress() {
  const match = /^#chat=([A-Za-z0-9_-]+)$/.exec(location.hash);
  return match ? match[1] : null;
}

function drawChats() {
  const shown = renderChats(byId("chat-list"), state.chats, {
    currentId: state.chatId,
    filter: byId("search").value,
  });
  const empty = byId("no-chats");
  empty.hidden = shown > 0;
  empty.textContent = state.chats.length ? "No chat matches." : "No chats yet.";
}

// Every chat, page by page (`before`: older than the page's last), so that none is out of reach
// of the list and its search however many there are.
async function loadChats() {
  const chats = [];
  for (;;) {
    const before = chats.length ? `&before=${api.id(chats[chats.length - 1].id)}` : "";
    const page = await api.getJson(`/api/chats?limit=${CHATS_PAGE}${before}`);
    chats.push(...page);
    if (page.length < CHATS_PAGE) break;
  }
  state.chats = chats;
  drawChats();
}

function setTitle() {
  const chat = state.chats.find((item) => item.id === state.chatId);
  const title = state.chatId ? chatTitle(chat) : "New chat";
  byId("chat-title").textContent = title;
  document.title = `${title} · patchbay`;
}

function drawThread() {
  // A whole redraw supersedes a streamed update still waiting for its frame: drawn after this,
  // that update would put the answer's last streamed state over what the store now says.
  if (frame) cancelAnimationFrame(frame);
  frame = 0;
  renderThread(messagesBox, state.messages, { busy: busy() });
  byId("empty").hidden = state.messages.length > 0;
  if (state.job) showAnswer(messagesBox, state.job);
  watchElsewhere();
}

// An answer this page does not follow (another tab's, or a stream it gave up on) is still being
// written: load the chat again shortly, until the store has it whole.
function watchElsewhere() {
  clearTimeout(watching);
  watching = 0;
  const writing = state.messages.some((m) => m.status === "queued" || m.status === "streaming");
  if (state.job || !writing) return;
  const chatId = state.chatId;
  watching = setTimeout(() => {
    watching = 0;
    if (state.chatId !== chatId || state.job) return;
    if (state.sending) watchElsewhere(); // not over what is being sent: later
    else loadMessages().catch(fail);
  }, WATCH_MS);
}

function scrollDown() {
  const thread = byId("thread");
  thread.scrollTop = thread.scrollHeight;
}

async function loadMessages() {
  state.messages = await api.getJson(`/api/chats/${api.id(state.chatId)}/messages`);
  drawThread();
}

async function openChat(chatId) {
  if (busy() && chatId !== state.chatId) {
    notify("Wait for the answer to finish, or stop it, before switching chats.");
    return;
  }
  state.chatId = chatId;
  history.replaceState(null, "", `${location.pathname}#chat=${chatId}`);
  closeSidebar();
  try {
    await loadMessages();
  } catch (error) {
    if (error.status !== 404) throw error;
    notify("That chat is no longer there.");
    newChat();
    return;
  }
  setTitle();
  drawChats();
  scrollDown();
}

function newChat() {
  if (busy()) return;
  state.chatId = null;
  state.messages = [];
  history.replaceState(null, "", location.pathname);
  closeSidebar();
  drawThread();
  setTitle();
  drawChats();
  composer.prompt.focus();
}

async function renameChat(chatId) {
  const chat = state.chats.find((item) => item.id === chatId);
  const dialog = byId("rename-dialog");
  const input = byId("rename-input");
  input.value = chat && chat.title ? chat.title : "";
  const choice = await ask(dialog, input);
  const title = input.value.trim();
  if (choice !== "ok" || !title) return;
  await api.getJson(`/api/chats/${api.id(chatId)}`, { method: "PATCH", json: { title } });
  await loadChats();
  setTitle();
}

async function deleteChat(chatId) {
  if (state.job && state.job.chatId === chatId) {
    notify("Stop the answer being written before deleting this chat.");
    return;
  }
  const chat = state.chats.find((item) => item.id === chatId);
  byId("delete-name").textContent = chatTitle(chat);
  if ((await ask(byId("delete-dialog"))) !== "ok") return;
  await api.request(`/api/chats/${api.id(chatId)}`, { method: "DELETE" });
  if (state.chatId === chatId) newChat();
  await loadChats();
}

function ask(dialog, focus) {
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
    dialog.showModal();
    if (focus) focus.select();
  });
}

// ---- sending, regenerating, following an answer

async function send() {
  const text = composer.text;
  const files = [...composer.files];
  if (busy() || (!text && !files.length)) return;
  clearNotice();
  state.sending = true;
  state.stopAsked = false;
  composer.setBusy(true);
  byId("empty").hidden = true;
  const pending = showPending(messagesBox, text, files);
  scrollDown();
  const turn = {
    text,
    channel: "web",
    chat_id: state.chatId || undefined,
    model: chosenModel(),
    delivery_id: composer.messageId(state.chatId),
  };
  let sent;
  try {
    sent = await postTurn(turn, files);
  } catch (error) {
    for (const node of pending) node.remove();
    byId("empty").hidden = state.messages.length > 0;
    throw error;
  } finally {
    state.sending = false;
    if (!sent) composer.setBusy(false);
  }
  const { job, response } = sent;
  composer.taken(files);
  pending[1].dataset.id = job.messageId; // the answer shows there until the chat is loaded
  if (state.stopAsked) stopJob(job).catch(fail); // Stop was pressed while the core took the turn
  state.chatId = job.chatId;
  history.replaceState(null, "", `${location.pathname}#chat=${job.chatId}`);
  await run(job, response);
}

// The turn's job, and its stream.
function postTurn(turn, files) {
  if (!files.length) return begin("/api/turns", { json: turn });
  const form = new FormData();
  form.append("turn", JSON.stringify(turn));
  for (const file of files) form.append("files", file, file.name);
  return begin("/api/turns/upload", { body: form });
}

// A turn's or a regenerate's job, and its stream. One the core took before (sent again after its
// answer was lost on the way) is not taken again: its job is followed from its start instead.
async function begin(path, init) {
  let response;
  try {
    response = await api.request(path, { ...init, method: "POST", headers: STREAM, signal: following.signal });
  } catch (error) {
    if (error.code !== "duplicate_delivery" || !error.details.job_id) throw error;
    return { job: await takenJob(error.details.job_id, following.signal), response: null };
  }
  return { job: jobFrom(response), response };
}

// Asked again for the same answer and model before the core confirmed it, a regenerate goes with
// the same id (see regenerates.js): one whose answer was lost on the way is answered once.
async function regenerate(messageId) {
  if (busy()) return;
  clearNotice();
  const chosen = chosenModel();
  const model = chosen && !chosen.startsWith("assistant:") ? chosen : undefined;
  const body = { channel: "web", model, delivery_id: regenerateOf(messageId, model).id };
  state.sending = true;
  let started;
  try {
    started = await begin(`/api/messages/${api.id(messageId)}/regenerate`, { json: body });
  } finally {
    state.sending = false;
  }
  forgetRegenerate(); // from now on the answer's job is kept
  await run(started.job, started.response);
}

async function switchBranch(messageId) {
  if (state.job) return;
  await api.getJson(`/api/chats/${api.id(state.chatId)}`, {
    method: "PATCH",
    json: { current_message_id: messageId },
  });
  await loadMessages();
}

function redraw(job) {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const thread = byId("thread");
    const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
    showAnswer(messagesBox, job);
    if (atBottom) scrollDown();
  });
}

// Follow `job` (its stream `response`, or resumed from sessionStorage) until it ends.
async function run(job, response) {
  const signal = following.signal;
  keepJob(job); // a reload from now on follows it on
  state.job = job;
  composer.setBusy(true);
  try {
    // Chat list and chat are loaded again when the answer ends: one that does not load now (the
    // channel restarting just then) does not keep the answer from being followed.
    loadChats().then(setTitle, unlessSignedOut);
    await loadMessages().catch(unlessSignedOut);
    scrollDown();
    await follow(job, response, redraw, signal);
  } catch (error) {
    if (error.status === 404) forgetJob();
    throw error;
  } finally {
    state.job = null;
    composer.setBusy(false);
    if (state.chatId) {
      await Promise.all([loadMessages(), loadChats()]).catch(fail);
      setTitle();
    }
  }
}

// Stop the answer; pressed while the turn is still being sent (its files read), as soon as the
// core names the job.
async function stop() {
  if (state.job) await stopJob(state.job);
  else if (state.sending) state.stopAsked = true;
}

// ---- wiring

function closeSidebar() {
  byId("app").classList.remove("sidebar-open");
  byId("scrim").hidden = true;
}

function openSidebar() {
  byId("app").classList.add("sidebar-open");
  byId("scrim").hidden = false;
}

function onChatListClick(event) {
  const button = event.target.closest("[data-action]");
  if (!button) return;
  const chatId = button.dataset.id;
  if (button.dataset.action === "open") guarded(openChat)(chatId);
  else if (button.dataset.action === "rename") guarded(renameChat)(chatId);
  else if (button.dataset.action === "delete") guarded(deleteChat)(chatId);
}

function onThreadClick(event) {
  const button = event.target.closest("[data-action]");
  if (!button) return;
  if (button.dataset.action === "regenerate") guarded(regenerate)(button.dataset.id);
  else if (button.dataset.action === "branch") guarded(switchBranch)(button.dataset.target);
  else if (button.dataset.action === "copy") copyCode(button);
}

function copyCode(button) {
  const code = button.closest("pre").querySelector("code");
  navigator.clipboard.writeText(code ? code.textContent : "").then(
    () => {
      button.textContent = "Copied";
      setTimeout(() => (button.textContent = "Copy"), 1500);
    },
    () => notify("The browser did not allow copying."),
  );
}

function wire() {
  composer = new Composer({ onSend: guarded(send), onStop: guarded(stop), onError: fail });
  byId("signin-form").addEventListener("submit", guarded(submitKey));
  byId("sign-out").addEventListener("click", guarded(signOut));
  byId("new-chat").addEventListener("click", () => newChat());
  byId("search").addEventListener("input", () => drawChats());
  byId("chat-list").addEventListener("click", onChatListClick);
  byId("messages").addEventListener("click", onThreadClick);
  byId("notice-close").addEventListener("click", clearNotice);
  byId("open-sidebar").addEventListener("click", openSidebar);
  byId("close-sidebar").addEventListener("click", closeSidebar);
  byId("scrim").addEventListener("click", closeSidebar);
  byId("model").addEventListener("change", rememberModel);
}

// Who is signed in. While the channel, or the core behind it, is out of reach nobody can say: the
// page shows that and asks again, rather than the sign-in form (the key's cookie may be good).
async function signedIn() {
  for (let tries = 0; ; tries += 1) {
    try {
      return (await api.session()).user;
    } catch (error) {
      if (!isAway(error)) throw error;
      byId("app").hidden = true;
      byId("signin").hidden = true;
      byId("away").hidden = false;
      byId("away-text").textContent = explain(error);
    }
    await retrySoon(Math.min(1000 * 2 ** tries, AWAY_RETRY_MS));
  }
}

// After `ms`, or as soon as Try again is pressed.
function retrySoon(ms) {
  return new Promise((resolve) => {
    const button = byId("retry");
    const now = () => {
      clearTimeout(timer);
      button.removeEventListener("click", now);
      resolve();
    };
    const timer = setTimeout(now, ms);
    button.addEventListener("click", now);
  });
}

async function start() {
  wire();
  restored = composer.restore();
  restoreRegenerate();
  let user = null;
  try {
    user = await signedIn();
  } catch (error) {
    showSignIn(explain(error));
    return;
  }
  if (user) await enter(user);
  else showSignIn("");
}

start().catch(fail);
