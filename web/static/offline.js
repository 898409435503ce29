// Honest connection state: once the page's live stream has been down for OFFLINE_AFTER_MS the
// page says so (a banner saying since when, in IST) and the caller stops claiming what it cannot
// know (the upstream badge) and stops offering to place; all undone when the stream is live.

import { istTime } from "./ist.js";

const OFFLINE_AFTER_MS = 3000;

export class OfflineWatch {
  // onOffline() and onOnline() are called once per outage, on entering and leaving it.
  constructor(banner, { onOffline, onOnline }) {
    this.banner = banner;
    this.onOffline = onOffline;
    this.onOnline = onOnline;
    this.since = null; // when the stream was last seen going down; null while live
    this.timer = null;
    this.offline = false;
  }

  link(state) {
    if (state === "live") {
      this.reset();
      return;
    }
    if (this.since !== null) return;
    this.since = new Date();
    this.timer = setTimeout(() => this.enter(), OFFLINE_AFTER_MS);
  }

  enter() {
    this.offline = true;
    this.banner.textContent = `Offline since ${istTime(this.since)}: orderdesk is not `
      + "reachable; placing is disabled until the connection is back.";
    this.banner.dataset.since = this.since.toISOString();
    this.banner.hidden = false;
    this.onOffline();
  }

  reset() {
    clearTimeout(this.timer);
    this.since = null;
    if (!this.offline) return;
    this.offline = false;
    this.banner.hidden = true;
    this.onOnline();
  }
}
