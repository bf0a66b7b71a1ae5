// The model picker: the catalog's models and the stored assistants (as `assistant:NAME`).

import { getJson } from "./api.js";
import { byId, el } from "./dom.js";

const MODEL_KEY = "patchbay.model";

export async function loadModels() {
  const [models, assistants] = await Promise.all([
    getJson("/api/models"),
    getJson("/api/assistants").catch(() => []),
  ]);
  const select = byId("model");
  const fallback = models.find((model) => model.is_default);
  const options = [
    el("option", { text: fallback ? `Default (${fallback.name})` : "Default model", attrs: { value: "" } }),
  ];
  const group = (label, items) => el("optgroup", { attrs: { label } }, items);
  if (models.length) {
    options.push(group("Models", models.map((m) => el("option", { text: m.name, attrs: { value: m.name } }))));
  }
  if (assistants.length) {
    const items = assistants.map((a) => el("option", { text: a.name, attrs: { value: `assistant:${a.name}` } }));
    options.push(group("Assistants", items));
  }
  select.replaceChildren(...options);
  const saved = localStorage.getItem(MODEL_KEY) || "";
  select.value = [...select.options].some((option) => option.value === saved) ? saved : "";
}

export function rememberModel(event) {
  localStorage.setItem(MODEL_KEY, event.target.value);
}

export function chosenModel() {
  return byId("model").value || undefined;
}
