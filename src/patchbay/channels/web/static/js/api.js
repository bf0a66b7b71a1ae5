// Calls to the web channel: `/auth/session`, and `/api/…`, the core's API with the signed-in key.

// Another site's page cannot send this header without a CORS preflight, which is never granted.
const PAGE_HEADER = { "X-Patchbay-Web": "1" };
export const UNREACHABLE = "patchbay cannot be reached; check that it is running.";

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details; // the answer's `error` object: some name what they refer to
  }
}

async function failure(response) {
  let code = `http_${response.status}`;
  let message = `patchbay answered ${response.status} ${response.statusText}`.trim();
  let details = {};
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      details = body.error;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, message, details);
}

export async function request(path, { method = "GET", json, body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...PAGE_HEADER, ...headers }, signal, credentials: "same-origin" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", UNREACHABLE);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

export async function getJson(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

export const session = () => getJson("/auth/session");
export const signIn = (key) => getJson("/auth/session", { method: "POST", json: { key } });
export const signOut = () => request("/auth/session", { method: "DELETE" });

export const id = (value) => encodeURIComponent(value);
