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

// Setting the token signs in (POST /session: the server sets its HttpOnly session cookie, so a
// plain `new WebSocket(url)` on this page opens the order stream, as older clients do); clearing
// it signs out (DELETE /session: the cookie's session ends and the sockets it opened close).
// The page itself keeps using the token and tickets: without the cookie it works all the same.
export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    const previous = sessionStorage.getItem(TOKEN_KEY);
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    if (value) this.cookie = cookieSession("POST", value);
    else if (previous) this.cookie = cookieSession("DELETE", previous);
  },
  cookie: Promise.resolve(), // the last sign-in or sign-out of the cookie's session
  onUnauthorized: null, // set by the app: the token stopped working
};

async function cookieSession(method, token) {
  try {
    const response = await fetch("/session", {
      method, headers: { Authorization: `Bearer ${token}` }, credentials: "same-origin",
    });
    if (!response.ok) console.warn(`${method} /session: HTTP ${response.status}`);
  } catch (err) {
    console.warn(`${method} /session: ${err.message}`);
  }
}

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
