// The order blotter: one row per order_id, updated in place, newest first, with filters; an
// open order's row carries Cancel (behind a confirmation) and Modify (inline price and quantity
// inputs under the row), and shows what came of either in the row.

import { rowButton, rowOutcome, showOutcome } from "./actions.js";
import { api, ApiError } from "./api.js";
import { confirmAction } from "./confirm.js";
import { istOfStamp } from "./ist.js";

const OPEN_STATES = new Set([
  "OPEN", "OPEN PENDING", "TRIGGER PENDING", "PUT ORDER REQ RECEIVED", "VALIDATION PENDING",
  "MODIFY PENDING", "MODIFY VALIDATION PENDING", "CANCEL PENDING", "AMO REQ RECEIVED",
]);
// The action first: its buttons never need a sideways scroll to reach. A cell of two fields
// shows them as two lines (the average price under the fill, the order's type under its
// price, its tag under its id), so the blotter fits a laptop's column, nothing cut off.
const COLUMNS = [
  ["action"], ["time"], ["tradingsymbol"], ["transaction_type"], ["quantity"],
  ["fill", "average_price"], ["price", "order_type"], ["status"], ["order_id", "tag"],
];

const fmtPrice = (v) => (v === null || v === undefined || v === "" ? "–"
  : Number(v).toLocaleString("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 }));

const LABELS = { // what each cell is called where the phone shows rows as cards
  time: "Time", tradingsymbol: "Symbol", transaction_type: "Side", quantity: "Qty",
  fill: "Filled / pending · avg", price: "Price · type", status: "Status",
  order_id: "Order id · tag",
};
const PRICED = new Set(["LIMIT", "SL"]);

const timeOf = (order) => istOfStamp(order.exchange_update_timestamp || order.order_timestamp);

// A refusal as one line: a 422's field messages, else its message.
const reason = (err) => (err instanceof ApiError && err.fields.length
  ? err.fields.map((f) => f.message).join("; ") : err.message);

function sortKey(order) {
  return String(order.order_timestamp || "");
}

export class Blotter {
  constructor(root, account) {
    this.tbody = root.querySelector("#orders tbody");
    this.empty = root.querySelector("#orders-empty");
    this.count = root.querySelector("#order-count");
    this.seqLabel = root.querySelector("#seq");
    this.statusFilter = root.querySelector("#filter-status");
    this.symbolFilter = root.querySelector("#filter-symbol");
    this.orders = new Map(); // order_id -> {order, row, arrival}
    this.arrivals = 0;
    this.account = account; // () => the account shown
    this.pending = false;
    this.statusFilter.addEventListener("change", () => this.render());
    this.symbolFilter.addEventListener("input", () => this.render());
  }

  reset(orders, seq) {
    this.orders.clear();
    this.tbody.replaceChildren();
    for (const order of orders) this.upsert(order, false);
    this.setSeq(seq);
    this.render();
  }

  openCount() {
    return [...this.orders.values()].filter((e) => OPEN_STATES.has(e.order.status)).length;
  }

  setSeq(seq) {
    this.seqLabel.textContent = seq === null || seq === undefined ? "seq –" : `seq ${seq}`;
  }

  apply(message) {
    this.upsert(message.order, message.source === "reconcile");
    this.setSeq(message.seq);
    this.schedule();
  }

  upsert(order, reconciled) {
    if (!order || !order.order_id) return;
    const id = String(order.order_id);
    let entry = this.orders.get(id);
    if (!entry) {
      entry = { order: {}, row: this.makeRow(id), arrival: this.arrivals++ };
      this.orders.set(id, entry);
    }
    entry.order = { ...entry.order, ...order };
    this.fill(entry, reconciled);
  }

  makeRow(id) {
    const row = document.createElement("tr");
    row.dataset.orderId = id;
    for (const [col, second] of COLUMNS) {
      const cell = document.createElement(col === "tradingsymbol" ? "th" : "td");
      if (col === "tradingsymbol") cell.scope = "row";
      if (LABELS[col]) cell.dataset.label = LABELS[col];
      if (["quantity", "fill", "price"].includes(col)) cell.className = "num";
      if (second) { // two fields, two lines: each its own element, named by its field
        cell.dataset.group = col;
        for (const name of [col, second]) {
          const part = document.createElement("span");
          part.className = "part";
          part.dataset.col = name;
          cell.append(part);
        }
      } else {
        cell.dataset.col = col;
      }
      row.append(cell);
    }
    row.querySelector('[data-col="action"]').append(
      rowButton("cancel", "Cancel", `Cancel order ${id}`, () => this.cancel(id)),
      rowButton("modify", "Modify", `Modify order ${id}`, () => this.openEditor(id)),
      rowOutcome());
    return row;
  }

  fill(entry, reconciled) {
    const o = entry.order;
    const filled = Number(o.filled_quantity || 0);
    const pending = o.pending_quantity ?? Math.max(0, Number(o.quantity || 0) - filled);
    const values = {
      time: timeOf(o),
      tradingsymbol: o.tradingsymbol || "",
      transaction_type: o.transaction_type || "",
      quantity: String(o.quantity ?? ""),
      fill: `${filled} / ${pending}`,
      order_type: o.order_type || "",
      price: o.order_type === "MARKET" ? "MKT" : fmtPrice(o.price),
      average_price: filled ? `@ ${fmtPrice(o.average_price)}` : "",
      status: o.status || "",
      tag: o.tag || "",
      order_id: String(o.order_id),
    };
    for (const cell of entry.row.querySelectorAll("[data-col]")) {
      if (cell.dataset.col === "action") continue;
      const value = values[cell.dataset.col];
      if (cell.textContent !== value) cell.textContent = value;
    }
    const row = entry.row;
    const open = OPEN_STATES.has(o.status);
    row.querySelector("button.cancel").hidden = !open;
    row.querySelector("button.modify").hidden = !open;
    if (!open && entry.editor) this.closeEditor(entry);
    row.dataset.status = o.status || "";
    row.dataset.side = o.transaction_type || "";
    const statusCell = row.querySelector('[data-col="status"]');
    statusCell.className = `status s-${(o.status || "").toLowerCase().replace(/\s+/g, "-")}`;
    statusCell.title = o.status_message || "";
    if (reconciled) row.dataset.reconciled = "true";
    row.classList.remove("flash");
    void row.offsetWidth; // restart the highlight
    row.classList.add("flash");
  }

  async cancel(id) {
    const entry = this.orders.get(id);
    const account = this.account?.();
    if (!entry || !account) return;
    const o = entry.order;
    const ok = await confirmAction({
      title: "Cancel this order?",
      text: `Cancels order ${id}: ${o.transaction_type} ${o.quantity} ${o.tradingsymbol} `
        + `${o.order_type === "MARKET" ? "at market" : `at ${fmtPrice(o.price)}`}.`,
      confirmLabel: "Cancel order",
    });
    if (!ok) return;
    const button = entry.row.querySelector("button.cancel");
    const outcome = entry.row.querySelector(".row-outcome");
    button.disabled = true;
    showOutcome(outcome, "pending", "cancelling…");
    try {
      await api(`/accounts/${encodeURIComponent(account)}/orders/${encodeURIComponent(id)}`,
                { method: "DELETE" });
      showOutcome(outcome, "done", "cancel sent");
    } catch (err) {
      showOutcome(outcome, "failed", `cancel refused: ${reason(err)}`);
    } finally {
      button.disabled = false;
    }
  }

  // Modify: a row under the order's with its price (LIMIT and SL only) and quantity to edit.
  openEditor(id) {
    const entry = this.orders.get(id);
    if (!entry) return;
    if (entry.editor) {
      entry.editor.querySelector("input")?.focus();
      return;
    }
    const o = entry.order;
    const editor = document.createElement("tr");
    editor.className = "modify-row";
    editor.dataset.editorFor = id;
    const cell = document.createElement("td");
    cell.colSpan = COLUMNS.length;
    const form = document.createElement("form");
    form.className = "modify-form";
    form.setAttribute("aria-label", `Modify order ${id}`);
    const field = (name, text, value, attrs) => {
      const label = document.createElement("label");
      label.textContent = text;
      const input = document.createElement("input");
      Object.assign(input, { name, type: "number", value: String(value ?? ""), ...attrs });
      input.id = `modify-${id}-${name}`;
      label.htmlFor = input.id;
      const wrap = document.createElement("span");
      wrap.className = "modify-field";
      wrap.append(label, input);
      return wrap;
    };
    if (PRICED.has(o.order_type)) {
      form.append(field("price", "New price", o.price, { min: "0", step: "0.05",
        inputMode: "decimal", required: true }));
    }
    form.append(field("quantity", "New qty (units)", o.quantity, { min: "1", step: "1",
      inputMode: "numeric", required: true }));
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = "Save";
    const close = rowButton("close", "Close", `Close the modify of order ${id}`,
      () => this.closeEditor(entry, true));
    form.append(save, close);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.modify(entry, form);
    });
    cell.append(form);
    editor.append(cell);
    entry.editor = editor;
    entry.row.after(editor);
    form.querySelector("input").focus();
  }

  closeEditor(entry, refocus = false) {
    entry.editor?.remove();
    entry.editor = null;
    if (refocus) entry.row.querySelector("button.modify")?.focus();
  }

  async modify(entry, form) {
    const account = this.account?.();
    const id = String(entry.order.order_id);
    if (!account) return;
    const body = {};
    for (const input of form.querySelectorAll("input")) {
      if (input.value !== "" && Number(input.value) !== Number(entry.order[input.name])) {
        body[input.name] = Number(input.value);
      }
    }
    const outcome = entry.row.querySelector(".row-outcome");
    if (!Object.keys(body).length) {
      showOutcome(outcome, "failed", "nothing changed");
      return;
    }
    const save = form.querySelector('button[type="submit"]');
    save.disabled = true;
    showOutcome(outcome, "pending", "modifying…");
    try {
      const done = await api(
        `/accounts/${encodeURIComponent(account)}/orders/${encodeURIComponent(id)}`,
        { method: "PUT", body });
      const price = PRICED.has(done.order_type) ? ` @ ${fmtPrice(done.price)}` : "";
      showOutcome(outcome, "done", `modified: ${done.quantity}${price}`);
      this.closeEditor(entry);
      entry.row.querySelector("button.modify")?.focus();
    } catch (err) {
      showOutcome(outcome, "failed", `modify refused: ${reason(err)}`);
      save.disabled = false;
    }
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  matches(order) {
    const status = this.statusFilter.value;
    if (status === "open" && !OPEN_STATES.has(order.status)) return false;
    if (status && status !== "open" && order.status !== status) return false;
    const symbol = this.symbolFilter.value.trim().toUpperCase();
    return !symbol || String(order.tradingsymbol || "").toUpperCase().includes(symbol);
  }

  render() {
    const entries = [...this.orders.values()].sort((a, b) => {
      const ka = sortKey(a.order), kb = sortKey(b.order);
      if (ka !== kb) return ka < kb ? 1 : -1;
      return b.arrival - a.arrival;
    });
    const shown = entries.filter((e) => this.matches(e.order))
      .flatMap((e) => (e.editor ? [e.row, e.editor] : [e.row]));
    // Reorder only what moved: rows keep their identity (and any focus) across updates.
    let cursor = this.tbody.firstElementChild;
    for (const row of shown) {
      if (row === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        this.tbody.insertBefore(row, cursor);
      }
    }
    while (cursor) {
      const next = cursor.nextElementSibling;
      cursor.remove();
      cursor = next;
    }
    const total = this.orders.size;
    const count = shown.filter((row) => !row.classList.contains("modify-row")).length;
    this.empty.hidden = count > 0;
    this.empty.textContent = total ? "No orders match the filters." : "No orders yet today.";
    this.count.textContent = count === total ? `${total} orders` : `${count} of ${total} orders`;
  }
}
