// One account's live order stream: a fresh single-use ticket per connection, the snapshot,
// then updates in seq order; after a drop it reconnects with backoff and `since=<last seq>`,
// so the server replays exactly what was missed (or sends a fresh snapshot if too old). With
// `positions=1` it also carries the account's positions (latest value only, no seq).

import { api, ApiError, wsBase } from "./api.js";

const PING_EVERY_MS = 25_000;
const BACKOFF_FIRST_MS = 250;
const BACKOFF_CAP_MS = 10_000;
const FATAL_CODES = new Map([
  [4403, "this token may not see this account"],
  [4404, "unknown account"],
  [4400, "bad request"],
]);

export class OrderStream {
  // handlers: onSnapshot(msg), onOrder(msg), onUpstream(state), onLink(state, detail),
  // onPositions(msg)
  constructor(account, handlers) {
    this.account = account;
    this.handlers = handlers;
    this.seq = null; // last seq applied; null until the first snapshot
    this.ws = null;
    this.stopped = false;
    this.attempt = 0;
    this.timer = null;
    this.pinger = null;
    this.connections = []; // {since, first, replayed} per connection, newest last (tests read it)
    this.watching = []; // EXCHANGE:SYMBOL whose last prices the positions messages carry
  }

  // Watch `instruments` instead of what was watched: their last prices come with the
  // positions messages (`watched`); asked again on every new connection.
  watch(instruments) {
    const gone = this.watching.filter((i) => !instruments.includes(i));
    this.watching = [...instruments];
    this.sendWatch("unwatch", gone);
    this.sendWatch("watch", this.watching);
  }

  sendWatch(action, instruments) {
    if (instruments.length && this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ action, instruments }));
    }
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = null;
      ws.close(1000, "page closed the stream");
    }
  }

  async connect() {
    if (this.stopped) return;
    this.handlers.onLink("connecting");
    let ticket;
    try {
      ticket = (await api(`/accounts/${encodeURIComponent(this.account)}/ws-ticket`,
                          { method: "POST" })).ticket;
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403
                                      || err.status === 404)) {
        this.handlers.onLink("refused", err.message);
        return;
      }
      this.retry(err.message);
      return;
    }
    if (this.stopped) return;
    const since = this.seq;
    const query = new URLSearchParams({ ticket, positions: "1" });
    if (since !== null) query.set("since", String(since));
    const url = `${wsBase()}/ws/orders/${encodeURIComponent(this.account)}?${query}`;
    const ws = new WebSocket(url);
    const record = { since, first: null, replayed: 0, opened: false };
    this.connections.push(record);
    this.ws = ws;
    ws.onopen = () => {
      record.opened = true;
      this.handlers.onLink("live");
      this.sendWatch("watch", this.watching);
      clearInterval(this.pinger);
      this.pinger = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send("ping");
      }, PING_EVERY_MS);
    };
    ws.onmessage = (event) => {
      let decoded;
      try {
        decoded = JSON.parse(event.data);
      } catch {
        return;
      }
      for (const message of Array.isArray(decoded) ? decoded : [decoded]) {
        if (record.first === null && message.type !== "pong") record.first = message.type;
        this.dispatch(message, record);
      }
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      if (this.stopped) return;
      if (FATAL_CODES.has(event.code)) {
        this.handlers.onLink("refused", event.reason || FATAL_CODES.get(event.code));
        return;
      }
      if (event.code === 4008) this.attempt = 0; // slow consumer: resume at once
      this.retry(event.reason || `closed (${event.code})`);
    };
  }

  dispatch(message, record) {
    switch (message.type) {
      case "snapshot":
        this.attempt = 0;
        this.seq = message.seq;
        this.handlers.onSnapshot(message);
        if (message.upstream) this.handlers.onUpstream(message.upstream);
        break;
      case "order":
        this.attempt = 0;
        if (this.seq !== null && message.seq <= this.seq) return; // already applied
        if (this.seq !== null && message.seq > this.seq + 1) {
          // a gap should never happen; resume from what we have rather than miss anything
          this.ws?.close(4000, "gap");
          return;
        }
        this.seq = message.seq;
        record.replayed += 1;
        this.handlers.onOrder(message);
        break;
      case "positions":
        this.handlers.onPositions?.(message);
        break;
      case "status":
        this.attempt = 0;
        this.handlers.onUpstream(message.upstream);
        break;
      default:
        break; // pong, error frames: nothing to show
    }
  }

  retry(reason) {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt += 1;
    this.handlers.onLink("reconnecting", `${reason}; retrying in ${(delay / 1000).toFixed(1)} s`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
