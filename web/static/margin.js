// The ticket's margin line: within a second of an edit, the basket's required margin against
// the funds available and its net credit/debit, from the read-only basket-margin route.
// Nothing is placed; a basket the page cannot yet validate asks nothing.

import { api, ApiError } from "./api.js";
import { rupees } from "./money.js";

const DEBOUNCE_MS = 400;

export class MarginPreview {
  constructor(basket, line) {
    this.basket = basket;
    this.line = line;
    this.timer = null;
    this.abort = null;
    this.latest = null; // the last quote shown, for the review
    for (const kind of ["input", "change"]) {
      basket.form.addEventListener(kind, () => this.schedule());
    }
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), DEBOUNCE_MS);
  }

  async refresh() {
    const account = this.basket.getAccount();
    if (!account || this.basket.validate().length) {
      this.show(null, "");
      return;
    }
    this.abort?.abort();
    this.abort = new AbortController();
    try {
      const quote = await api(`/accounts/${encodeURIComponent(account)}/basket-margin`,
        { method: "POST", body: this.basket.body(), signal: this.abort.signal });
      this.show(quote, describe(quote));
    } catch (err) {
      if (err.name === "AbortError") return;
      const message = err instanceof ApiError && err.fields?.length
        ? err.fields.map((f) => f.message).join("; ") : err.message;
      this.show(null, `Margin unknown: ${message}`);
    }
  }

  show(quote, text) {
    this.latest = quote;
    this.line.textContent = text;
    this.line.hidden = !text;
    this.line.dataset.fits = quote ? String(quote.fits) : "";
  }
}

export function premiumText(net) {
  if (net === null || net === undefined) return "net premium unknown";
  return net >= 0 ? `net credit ${rupees(net)}` : `net debit ${rupees(-net)}`;
}

export function describe(quote) {
  const parts = [`Margin ${rupees(quote.required)} required`];
  if (quote.available !== null) parts.push(`${rupees(quote.available)} available`);
  if (quote.fits === false) parts.push(`short by ${rupees(quote.short_by)}`);
  parts.push(premiumText(quote.net_premium));
  return parts.join(" · ");
}
