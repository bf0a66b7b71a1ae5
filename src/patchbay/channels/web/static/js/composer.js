// Writing a message: the text box, attached files (picked, dropped or recorded) and Send/Stop.

import { byId, el, formatSize, icon } from "./dom.js";

const MAX_FILES = 20;
// The box, and the message last sent from it while the core has not confirmed it took it (with
// its id), kept in the tab's sessionStorage: a reload after a send that failed puts them back, and
// that message sent again is the same one for the core, stored once. Its files are not kept (a
// page cannot store what a person picked, and 30 MB do not belong in sessionStorage): only their
// names, to ask for them again.
const STORAGE_KEY = "patchbay.composer";

// 32 random hex digits, for a message or a regenerate. Not `crypto.randomUUID()`: browsers give it
// to https pages (and localhost's) only, and the page may be plain http on another machine.
export function newMessageId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

const describe = (file) => ({ name: file.name, size: file.size, type: file.type });

// A file sent, or, after a reload, one of the same name, size and type attached again.
const sameFile = (sent, file) =>
  sent === file ||
  (!(sent instanceof File) && sent.name === file.name && sent.size === file.size && sent.type === file.type);

// The files sent; after a reload also none at all: sent without them again, a message that had
// reached the core with them is still that message, and one that had not goes as the person chose.
function sameFiles(sent, files) {
  if (sent.restored && !files.length) return true;
  return sent.files.length === files.length && sent.files.every((kept, index) => sameFile(kept, files[index]));
}

export class Composer {
  constructor({ onSend, onStop, onError }) {
    this.files = [];
    this.sent = null; // what was last sent from the box, and its id
    this.previews = new Map();
    this.recorder = null;
    this.onError = onError;
    this.form = byId("composer");
    this.prompt = byId("prompt");
    this.input = byId("file-input");
    this.list = byId("attachments");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      onSend();
    });
    byId("stop").addEventListener("click", () => onStop());
    byId("attach").addEventListener("click", () => this.input.click());
    byId("record").addEventListener("click", () => this.toggleRecording());
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = "";
    });
    this.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.prompt.addEventListener("input", () => {
      this.fit();
      this.save();
    });
    this.form.addEventListener("dragover", (event) => event.preventDefault());
    this.form.addEventListener("drop", (event) => {
      event.preventDefault();
      this.add([...(event.dataTransfer ? event.dataTransfer.files : [])]);
    });
    this.list.addEventListener("click", (event) => {
      const button = event.target.closest("[data-remove]");
      if (button) this.remove(Number(button.dataset.remove));
    });
  }

  get text() {
    return this.prompt.value.trim();
  }

  // The id of the message in the box: made when it is first sent, and kept while the same text
  // and files are sent again to the same chat, also after a reload. A send whose answer was lost
  // on the way may have reached the core, which then stores the message once and names its turn.
  messageId(chatId) {
    const sent = this.sent;
    const same = sent && sent.chatId === chatId && sent.text === this.text && sameFiles(sent, this.files);
    if (!same) this.sent = { id: newMessageId(), chatId, text: this.text, files: [...this.files] };
    this.save();
    return this.sent.id;
  }

  save() {
    const sent = this.sent && { ...this.sent, files: this.sent.files.map(describe) };
    const text = this.prompt.value;
    try {
      if (text || sent) sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ text, sent }));
      else sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // storage full or refused: the box is just not kept over a reload
    }
  }

  // The box as it was before the page was reloaded; returns the message the core had not
  // confirmed taking, back in the box to be sent again (null when there is none).
  restore() {
    let kept = null;
    try {
      kept = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    } catch {
      kept = null;
    }
    if (!kept || typeof kept.text !== "string") return null;
    this.prompt.value = kept.text;
    this.fit();
    const sent = kept.sent;
    // Edited after it was sent, the box holds another message, which gets its own id.
    const unsent = sent && typeof sent.id === "string" && sent.text === this.text && Array.isArray(sent.files);
    this.sent = unsent ? { ...sent, restored: true } : null;
    this.save();
    return this.sent;
  }

  fit() {
    this.prompt.style.height = "auto";
    this.prompt.style.height = `${this.prompt.scrollHeight}px`;
  }

  add(files) {
    const room = MAX_FILES - this.files.length;
    if (files.length > room) this.onError(new Error(`At most ${MAX_FILES} files go with one message.`));
    this.files.push(...files.slice(0, Math.max(room, 0)));
    this.render();
  }

  remove(index) {
    this.files.splice(index, 1);
    this.render();
  }

  render() {
    for (const url of this.previews.values()) URL.revokeObjectURL(url);
    this.previews.clear();
    this.list.replaceChildren(
      ...this.files.map((file, index) => {
        let preview = icon("file");
        if (file.type.startsWith("image/")) {
          const url = URL.createObjectURL(file);
          this.previews.set(index, url);
          preview = el("img", { attrs: { src: url, alt: "" } });
        }
        return el("li", { cls: "file-chip", attrs: { title: file.type || "file" } }, [
          preview,
          el("span", { text: file.name }),
          el("span", { cls: "muted", text: formatSize(file.size) }),
          el("button", {
            attrs: { type: "button", "aria-label": `Remove ${file.name}`, "data-remove": String(index) },
          }, [icon("x")]),
        ]);
      }),
    );
  }

  // The core took the message sent: it leaves the box, but what was typed or attached while it
  // was being sent (a long upload) stays.
  taken(files) {
    if (this.sent && this.text === this.sent.text) this.prompt.value = "";
    this.files = this.files.filter((file) => !files.includes(file));
    this.sent = null;
    this.render();
    this.fit();
    this.save();
  }

  // Everything goes (signing out): the box, and what the tab kept of it.
  clear() {
    this.prompt.value = "";
    this.files = [];
    this.sent = null;
    this.render();
    this.fit();
    sessionStorage.removeItem(STORAGE_KEY);
  }

  setBusy(busy) {
    byId("send").hidden = busy;
    byId("stop").hidden = !busy;
  }

  async toggleRecording() {
    if (this.recorder) {
      this.recorder.stop();
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
      this.onError(new Error("This browser cannot record audio on this page."));
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      this.onError(new Error(`The microphone is not available (${error.message || error.name}).`));
      return;
    }
    this.record(stream);
  }

  record(stream) {
    const webm = "audio/webm;codecs=opus";
    const recorder = new MediaRecorder(stream, MediaRecorder.isTypeSupported(webm) ? { mimeType: webm } : {});
    const chunks = [];
    const button = byId("record");
    const clock = byId("record-time");
    const started = Date.now();
    const tick = () => {
      const seconds = Math.floor((Date.now() - started) / 1000);
      clock.textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    };
    const timer = setInterval(tick, 500);
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data.size) chunks.push(event.data);
    });
    recorder.addEventListener("stop", () => {
      clearInterval(timer);
      for (const track of stream.getTracks()) track.stop();
      this.recorder = null;
      button.setAttribute("aria-pressed", "false");
      button.setAttribute("aria-label", "Record audio");
      clock.hidden = true;
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
      const blob = new Blob(chunks, { type: "audio/webm" });
      this.add([new File([blob], `recording-${stamp}.webm`, { type: "audio/webm" })]);
    });
    this.recorder = recorder;
    recorder.start(250);
    tick();
    clock.hidden = false;
    button.setAttribute("aria-pressed", "true");
    button.setAttribute("aria-label", "Stop recording");
  }
}
