// The order blotter: one row per order_id, updated in place, newest first, with filters; an
// open order's row carries a Cancel button (behind a confirmation) and shows its outcome.

import { api } from "./api.js";
import { confirmAction } from "./confirm.js";

const OPEN_STATES = new Set([
  "OPEN", "OPEN PENDING", "TRIGGER PENDING", "PUT ORDER REQ RECEIVED", "VALIDATION PENDING",
  "MODIFY PENDING", "MODIFY VALIDATION PENDING", "CANCEL PENDING", "AMO REQ RECEIVED",
]);
const COLUMNS = [ // the action first: a Cancel button never needs a sideways scroll to reach
  "action", "time", "tradingsymbol", "transaction_type", "quantity", "fill", "order_type", "price",
  "average_price", "status", "tag", "order_id",
];

const fmtPrice = (v) => (v === null || v === undefined || v === "" ? "–"
  : Number(v).toLocaleString("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 }));

function timeOf(order) {
  const stamp = order.exchange_update_timestamp || order.order_timestamp || "";
  const match = /(\d{2}:\d{2}:\d{2})/.exec(String(stamp));
  return match ? match[1] : "–";
}

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
    for (const col of COLUMNS) {
      const cell = document.createElement(col === "tradingsymbol" ? "th" : "td");
      if (col === "tradingsymbol") cell.scope = "row";
      cell.dataset.col = col;
      if (["quantity", "fill", "price", "average_price"].includes(col)) cell.className = "num";
      row.append(cell);
    }
    const action = row.querySelector('[data-col="action"]');
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary cancel";
    button.textContent = "Cancel";
    button.setAttribute("aria-label", `Cancel order ${id}`);
    button.addEventListener("click", () => this.cancel(id));
    const outcome = document.createElement("span");
    outcome.className = "row-outcome";
    outcome.setAttribute("role", "status");
    action.append(button, outcome);
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
      average_price: filled ? fmtPrice(o.average_price) : "–",
      status: o.status || "",
      tag: o.tag || "",
      order_id: String(o.order_id),
    };
    for (const cell of entry.row.children) {
      if (cell.dataset.col === "action") continue;
      const value = values[cell.dataset.col];
      if (cell.textContent !== value) cell.textContent = value;
    }
    const row = entry.row;
    row.querySelector("button.cancel").hidden = !OPEN_STATES.has(o.status);
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
    outcome.dataset.state = "pending";
    outcome.textContent = "cancelling…";
    try {
      await api(`/accounts/${encodeURIComponent(account)}/orders/${encodeURIComponent(id)}`,
                { method: "DELETE" });
      outcome.dataset.state = "done";
      outcome.textContent = "cancel sent";
    } catch (err) {
      outcome.dataset.state = "failed";
      outcome.textContent = `cancel refused: ${err.message}`;
    } finally {
      button.disabled = false;
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
    const shown = entries.filter((e) => this.matches(e.order)).map((e) => e.row);
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
    this.empty.hidden = shown.length > 0;
    this.empty.textContent = total ? "No orders match the filters." : "No orders yet today.";
    this.count.textContent = shown.length === total ? `${total} orders`
      : `${shown.length} of ${total} orders`;
  }
}
