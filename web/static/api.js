// HTTP calls to orderdesk with the session's bearer token; errors carry the JSON error body.

const TOKEN_KEY = "orderdesk.token";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.fields = Array.isArray(this.body.fields) ? this.body.fields : [];
  }
}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  onUnauthorized: null, // set by the app: the token stopped working
};

export async function api(path, { method = "GET", body, headers = {}, token, signal } = {}) {
  const bearer = token ?? session.token;
  const init = { method, headers: { Accept: "application/json", ...headers }, signal };
  if (bearer) init.headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { error: "network", message: "orderdesk is not reachable" });
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: "bad_response", message: text.slice(0, 200) };
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && token === undefined && session.onUnauthorized) {
      session.onUnauthorized(error);
    }
    throw error;
  }
  return data;
}

export function wsBase() {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`;
}
