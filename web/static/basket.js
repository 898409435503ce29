// The basket ticket: up to 10 legs, submitted as one batch; per-leg results and rollbacks.

import { api, ApiError } from "./api.js";
import { MarginPreview } from "./margin.js";
import { BasketResults } from "./results.js";
import { reviewBasket } from "./review.js";
import { offerSplit } from "./split.js";

const MAX_LEGS = 10;
const TAG = /^od([A-Z2-7]{10})(\d+)([LR])(\d)$/i;

function decimals(step) {
  const text = String(step);
  return text.includes(".") ? text.split(".")[1].length : 0;
}

export class Basket {
  constructor(root, getAccount) {
    this.root = root;
    this.getAccount = getAccount;
    this.form = root.querySelector("#basket-form");
    this.list = root.querySelector("#legs");
    this.template = document.querySelector("#leg-template");
    this.datalist = root.querySelector("#symbols");
    this.addButton = root.querySelector("#add-leg");
    this.legCount = root.querySelector("#leg-count");
    this.submitButton = root.querySelector("#basket-submit");
    this.result = root.querySelector("#basket-result");
    this.results = new BasketResults(this.result);
    this.basketError = root.querySelector("#basket-error");
    this.known = new Map(); // tradingsymbol -> instrument row
    this.nextId = 0;
    this.inflight = null; // {legs, batchId, live: Map legIndex -> {leg, rollback}}
    this.retryKey = null; // the Idempotency-Key to reuse when the same basket is retried
    this.lastBody = null;
    this.searchTimer = null;
    this.searchAbort = null;
    this.addButton.addEventListener("click", () => {
      const leg = this.addLeg();
      leg?.querySelector('[name="tradingsymbol"]').focus();
    });
    // Enter never places: only the button opens the review, and only its confirm places.
    this.form.addEventListener("submit", (e) => e.preventDefault());
    this.submitButton.addEventListener("click", () => this.submit());
    this.margin = new MarginPreview(this, root.querySelector("#basket-margin"));
    this.addLeg();
  }

  legs() {
    return [...this.list.querySelectorAll(".leg")];
  }

  addLeg(values = {}) {
    if (this.legs().length >= MAX_LEGS) return null;
    const fragment = this.template.content.cloneNode(true);
    const li = fragment.querySelector(".leg");
    const id = `leg${this.nextId++}`;
    li.dataset.legId = id;
    for (const field of li.querySelectorAll(".field")) {
      const control = field.querySelector("input, select");
      const label = field.querySelector("label");
      const error = field.querySelector(".error");
      control.id = `${id}-${control.name}`;
      label.htmlFor = control.id;
      error.id = `${control.id}-error`;
      const help = field.querySelector(".help");
      if (help) help.id = `${control.id}-help`;
      control.setAttribute("aria-describedby",
        [help?.id, error.id].filter(Boolean).join(" "));
    }
    const symbol = li.querySelector('[name="tradingsymbol"]');
    const lots = li.querySelector('[name="lots"]');
    const type = li.querySelector('[name="order_type"]');
    const price = li.querySelector('[name="price"]');
    symbol.addEventListener("input", () => {
      symbol.value = symbol.value.toUpperCase();
      this.search(symbol.value);
      this.describe(li);
    });
    symbol.addEventListener("change", () => this.resolve(li));
    lots.addEventListener("input", () => this.describe(li));
    type.addEventListener("change", () => {
      price.disabled = type.value !== "LIMIT";
      price.required = type.value === "LIMIT";
      if (price.disabled) price.value = "";
      this.clearError(li, "price");
    });
    for (const control of li.querySelectorAll("input, select")) {
      control.addEventListener("input", () => this.clearError(li, control.dataset.errorField
        || (control.name === "lots" ? "quantity" : control.name)));
    }
    li.querySelector(".remove").addEventListener("click", () => {
      const legs = this.legs();
      const at = legs.indexOf(li);
      li.remove();
      this.renumber();
      const rest = this.legs();
      (rest[Math.min(at, rest.length - 1)]?.querySelector(".remove") ?? this.addButton).focus();
    });
    for (const [name, value] of Object.entries(values)) {
      const control = li.querySelector(`[name="${name}"]`);
      if (control) control.value = value;
    }
    this.list.append(li);
    type.dispatchEvent(new Event("change"));
    if (values.tradingsymbol) this.resolve(li);
    this.renumber();
    return li;
  }

  // Whether the ticket still holds a placed basket (its Clear/Repeat offer is showing).
  get placed() {
    return Boolean(this.result.querySelector(".after-success"));
  }

  // The ticket's legs replaced by `list` (each as `addLeg` takes it; none: one blank leg): a
  // new ticket, so a placed one's outcome and Clear/Repeat offer give way to Place basket (as
  // Clear does). The option chain's B/S and templates and a saved basket's Load fill it here.
  replaceLegs(list) {
    if (this.placed) {
      this.result.querySelector(".after-success").remove();
      this.result.hidden = true;
    }
    this.submitButton.hidden = false;
    for (const li of this.legs()) li.remove();
    for (const values of list.slice(0, MAX_LEGS)) this.addLeg(values);
    if (!this.legs().length) this.addLeg();
    this.margin.schedule();
  }

  renumber() {
    const legs = this.legs();
    legs.forEach((li, i) => {
      li.querySelector(".leg-no").textContent = String(i + 1);
      li.querySelector(".remove").setAttribute("aria-label", `Remove leg ${i + 1}`);
      li.querySelector(".remove").disabled = legs.length === 1;
    });
    this.addButton.disabled = legs.length >= MAX_LEGS;
    this.legCount.textContent = `${legs.length} of ${MAX_LEGS} legs`;
  }

  // -- instruments ----------------------------------------------------------------------

  // `signal`: the autocomplete's (each keystroke's search replaces the last); resolving a leg's
  // symbol passes none, so a search typed meanwhile can never cut it short.
  async lookup(query, limit = 30, signal = undefined) {
    const params = new URLSearchParams({ q: query, limit: String(limit) });
    const account = this.getAccount();
    if (account) params.set("account", account);
    const body = await api(`/instruments?${params}`, signal ? { signal } : {});
    for (const row of body.instruments) this.known.set(row.tradingsymbol, row);
    return body.instruments;
  }

  search(query) {
    clearTimeout(this.searchTimer);
    if (query.length < 2) return;
    this.searchTimer = setTimeout(async () => {
      this.searchAbort?.abort();
      this.searchAbort = new AbortController();
      try {
        const rows = await this.lookup(query, 30, this.searchAbort.signal);
        this.datalist.replaceChildren(...rows.map((r) => {
          const option = document.createElement("option");
          option.value = r.tradingsymbol;
          option.label = `${r.exchange} · ${r.instrument_type} · lot ${r.lot_size}`;
          return option;
        }));
      } catch (err) {
        if (err.name !== "AbortError") console.warn("instrument search failed", err);
      }
    }, 120);
  }

  async resolve(li) {
    const symbol = li.querySelector('[name="tradingsymbol"]').value.trim().toUpperCase();
    if (symbol && !this.known.has(symbol)) {
      try {
        await this.lookup(symbol, 10);
      } catch (err) {
        console.warn("instrument lookup failed", err);
      }
    }
    this.describe(li);
    this.margin.schedule(); // the lot size is known only now
  }

  instrumentOf(li) {
    return this.known.get(li.querySelector('[name="tradingsymbol"]').value.trim().toUpperCase());
  }

  describe(li) {
    const inst = this.instrumentOf(li);
    const lotHelp = li.querySelector(".lot");
    const unitsHelp = li.querySelector(".units");
    const price = li.querySelector('[name="price"]');
    const product = li.querySelector('[name="product"]');
    if (!inst) {
      lotHelp.textContent = "";
      unitsHelp.textContent = "";
      return;
    }
    lotHelp.textContent = `${inst.exchange} · lot ${inst.lot_size} · tick ${inst.tick_size}`;
    price.step = String(inst.tick_size || 0.05);
    if (inst.exchange === "NSE" && product.value === "NRML") product.value = "MIS";
    if (inst.exchange === "NFO" && product.value === "CNC") product.value = "NRML";
    const lots = Number(li.querySelector('[name="lots"]').value);
    unitsHelp.textContent = Number.isInteger(lots) && lots > 0
      ? `= ${lots * inst.lot_size} units` : "";
  }

  // -- errors ---------------------------------------------------------------------------

  clearErrors() {
    for (const el of this.root.querySelectorAll(".error")) el.textContent = "";
    for (const el of this.root.querySelectorAll("button.split")) el.remove();
    for (const el of this.root.querySelectorAll("[aria-invalid]")) {
      el.removeAttribute("aria-invalid");
    }
  }

  clearError(li, field) {
    const el = li.querySelector(`.error[data-field="${field}"]`);
    if (el) el.textContent = "";
    if (field === "quantity") li.querySelector("button.split")?.remove();
    li.querySelector(`.error[data-field="${field}"]`)?.closest(".field")
      ?.querySelector("input, select")?.removeAttribute("aria-invalid");
  }

  showError(path, message) {
    const match = /^orders\[(\d+)\](?:\.(\w+))?$/.exec(path);
    if (match) {
      const li = this.legs()[Number(match[1])];
      const field = match[2] === "exchange" ? "tradingsymbol" : match[2] || "";
      const el = li?.querySelector(`.error[data-field="${field}"]`)
        ?? li?.querySelector('.error[data-field=""]');
      if (el) {
        el.textContent = el.textContent ? `${el.textContent}; ${message}` : message;
        el.closest(".field")?.querySelector("input, select")
          ?.setAttribute("aria-invalid", "true");
        return el;
      }
    }
    const target = this.root.querySelector(`.error[data-path="${path}"]`) ?? this.basketError;
    const text = target === this.basketError && path && path !== "orders"
      ? `${path}: ${message}` : message;
    target.textContent = target.textContent ? `${target.textContent}; ${text}` : text;
    return target;
  }

  // The server's error next to its field; above the freeze limit (its message in lots), with
  // the offer to split the leg.
  markError(path, message, rule) {
    const el = this.showError(path, message);
    const leg = /^orders\[(\d+)\]\.quantity$/.exec(path);
    if (rule === "freeze_limit" && leg) offerSplit(this, this.legs()[Number(leg[1])]);
    return el;
  }

  validate() {
    const problems = [];
    this.legs().forEach((li, i) => {
      const inst = this.instrumentOf(li);
      const lots = Number(li.querySelector('[name="lots"]').value);
      const type = li.querySelector('[name="order_type"]').value;
      const price = li.querySelector('[name="price"]').value;
      if (!li.querySelector('[name="tradingsymbol"]').value.trim()) {
        problems.push([`orders[${i}].tradingsymbol`, "enter a symbol"]);
      } else if (!inst) {
        problems.push([`orders[${i}].tradingsymbol`, "unknown instrument"]);
      }
      if (!Number.isInteger(lots) || lots < 1) {
        problems.push([`orders[${i}].quantity`, "a whole number of lots, at least 1"]);
      }
      if (type === "LIMIT") {
        const p = Number(price);
        const tick = inst?.tick_size || 0.05;
        if (price === "" || !(p > 0)) {
          problems.push([`orders[${i}].price`, "a LIMIT order needs a price"]);
        } else if (Math.abs(p / tick - Math.round(p / tick)) > 1e-6) {
          problems.push([`orders[${i}].price`, `a multiple of the tick, ${tick}`]);
        }
      }
    });
    const timeout = this.root.querySelector("#timeout").value;
    if (timeout !== "" && !(Number(timeout) >= 1 && Number(timeout) <= 60)) {
      problems.push(["timeout_s", "from 1 to 60 seconds"]);
    }
    return problems;
  }

  body() {
    const orders = this.legs().map((li) => {
      const inst = this.instrumentOf(li);
      const value = (name) => li.querySelector(`[name="${name}"]`).value;
      const leg = {
        tradingsymbol: value("tradingsymbol").trim().toUpperCase(),
        exchange: inst?.exchange ?? "NFO",
        transaction_type: value("transaction_type"),
        quantity: Number(value("lots")) * (inst?.lot_size ?? 1),
        order_type: value("order_type"),
        product: value("product"),
      };
      if (leg.order_type === "LIMIT") {
        leg.price = Number(Number(value("price")).toFixed(decimals(inst?.tick_size ?? 0.05)));
      }
      return leg;
    });
    const body = {
      orders,
      rollback_on_failure: this.root.querySelector("#rollback").checked,
      execution: this.form.elements.execution.value,
    };
    const timeout = this.root.querySelector("#timeout").value;
    if (timeout !== "") body.timeout_s = Number(timeout);
    return body;
  }

  // -- submit and results ---------------------------------------------------------------

  async submit() {
    if (this.inflight) return;
    this.clearErrors();
    const account = this.getAccount();
    const problems = this.validate();
    if (problems.length) {
      const first = problems.map(([path, message]) => this.showError(path, message))[0];
      first?.closest(".field")?.querySelector("input, select")?.focus();
      return;
    }
    const body = this.body();
    const lotSize = (symbol) => this.known.get(symbol)?.lot_size;
    if (this.reviewing) return;
    this.reviewing = true;
    try {
      if (!await reviewBasket(body, lotSize, this.margin.latest)) return;
    } finally {
      this.reviewing = false;
    }
    if (this.inflight) return;
    const serial = JSON.stringify(body);
    const key = serial === this.lastBody && this.retryKey ? this.retryKey : crypto.randomUUID();
    this.lastBody = serial;
    this.retryKey = key;
    this.inflight = { body, batchId: null, live: new Map() };
    this.submitButton.disabled = true;
    this.submitButton.textContent = "Placing…";
    this.results.progress(this.inflight);
    try {
      const result = await api(`/accounts/${encodeURIComponent(account)}/batch-orders`,
        { method: "POST", body, headers: { "Idempotency-Key": key } });
      this.retryKey = null; // processed: a new submit is a new basket
      this.results.show(body, result);
      if (result.status === "success") this.offerClearOrRepeat();
    } catch (err) {
      this.results.failure(err, (path, message, field) => this.markError(path, message,
        field?.rule));
      this.form.querySelector('[aria-invalid="true"]')?.focus();
      if (err instanceof ApiError && err.status && err.status < 500) this.retryKey = null;
    } finally {
      this.inflight = null;
      this.submitButton.disabled = false;
      this.submitButton.textContent = "Place basket";
    }
  }

  // Live progress from the order stream while the batch runs (the response is authoritative).
  observe(order) {
    const flight = this.inflight;
    const match = flight && TAG.exec(order.tag || "");
    if (!match) return;
    const [, batchId, , kind] = match;
    if (flight.batchId && flight.batchId !== batchId.toUpperCase()) return;
    const legs = flight.body.orders;
    let index = -1;
    for (const [i, state] of flight.live) {
      if (state.leg?.order_id === order.order_id || state.rollback?.order_id === order.order_id) {
        index = i;
      }
    }
    if (index < 0) {
      const side = kind.toUpperCase() === "L" ? order.transaction_type
        : order.transaction_type === "BUY" ? "SELL" : "BUY";
      index = legs.findIndex((leg, i) => leg.tradingsymbol === order.tradingsymbol
        && leg.transaction_type === side
        && (kind.toUpperCase() === "R" || leg.quantity === Number(order.quantity))
        && !(kind.toUpperCase() === "L" && flight.live.get(i)?.leg));
    }
    if (index < 0) return;
    flight.batchId = batchId.toUpperCase();
    const state = flight.live.get(index) ?? {};
    state[kind.toUpperCase() === "L" ? "leg" : "rollback"] = order;
    flight.live.set(index, state);
    this.results.progress(flight);
  }

  offerClearOrRepeat() {
    this.results.offerClearOrRepeat(this.submitButton, {
      clear: () => {
        for (const li of this.legs()) li.remove();
        this.addLeg()?.querySelector('[name="tradingsymbol"]').focus();
        this.margin.schedule();
      },
      repeat: () => {
        this.lastBody = null; // deliberately a new basket: a new Idempotency-Key
        this.submit();
      },
    });
  }
}
