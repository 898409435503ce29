// The positions panel: net positions with live P&L (the GET as the first fill, then the order
// socket's `positions` messages), an exit per position and the kill switch, each behind a
// confirmation naming what it will send, its report shown. A missing LTP reads "LTP
// unavailable", never a zero P&L.

import { rowButton } from "./actions.js";
import { api, ApiError } from "./api.js";
import { confirmAction } from "./confirm.js";

const money = (v) => Number(v).toLocaleString("en-IN",
  { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const signed = (v) => (v > 0 ? "+" : "") + money(v);
const instrument = (p) => `${p.exchange}:${p.tradingsymbol}`;

const sign = (v) => (v > 0 ? "+" : v < 0 ? "-" : "0");

function cell(col) {
  const td = document.createElement("td");
  td.className = "num";
  td.dataset.col = col;
  return td;
}

export class PositionsPanel {
  // getAccount(): the account shown; openOrders(): how many of its orders are open now
  constructor(root, getAccount, openOrders) {
    this.root = root;
    this.getAccount = getAccount;
    this.openOrders = openOrders;
    this.tbody = root.querySelector("#positions tbody");
    this.empty = root.querySelector("#positions-empty");
    this.total = root.querySelector("#positions-total");
    this.result = root.querySelector("#positions-result");
    this.error = root.querySelector("#positions-error");
    this.report = null; // the latest report shown (its account), so a late GET never wins
    this.positions = [];
    this.rows = new Map(); // "exchange:symbol|product" -> its row
    this.busy = false;
    root.querySelector("#kill").addEventListener("click", () => this.kill());
  }

  reset() {
    this.report = null;
    this.positions = [];
    this.error.textContent = "";
    this.result.hidden = true;
    this.render(null);
  }

  // The first fill: the socket's messages (newer) replace it, and it never replaces them.
  async load(account) {
    try {
      const report = await api(`/accounts/${encodeURIComponent(account)}/positions`);
      if (this.getAccount() === account && this.report === null) this.apply(report);
    } catch (err) {
      if (this.getAccount() === account) this.error.textContent = `Positions: ${err.message}`;
    }
  }

  apply(report) {
    if (!report || report.account !== this.getAccount()) return;
    this.report = report;
    this.error.textContent = "";
    this.positions = Array.isArray(report.positions) ? report.positions : [];
    this.render(report);
  }

  open() {
    return this.positions.filter((p) => p.quantity !== 0);
  }

  render(report) {
    // Rows keep their identity across updates (a focused Exit button stays focused).
    const rows = this.positions.map((p) => {
      const key = `${instrument(p)}|${p.product}`;
      let tr = this.rows.get(key);
      if (!tr) {
        tr = this.makeRow(p);
        this.rows.set(key, tr);
      }
      this.fill(tr, p);
      return tr;
    });
    const kept = new Set(rows);
    for (const [key, tr] of this.rows) if (!kept.has(tr)) this.rows.delete(key);
    rows.forEach((tr, n) => {
      const here = this.tbody.children[n] ?? null;
      if (here !== tr) this.tbody.insertBefore(tr, here);
    });
    while (this.tbody.children.length > rows.length) this.tbody.lastElementChild.remove();
    this.empty.hidden = rows.length > 0;
    const total = report?.total_pnl;
    if (!report) {
      this.total.textContent = "";
      delete this.total.dataset.sign;
    } else if (total === null || total === undefined) {
      this.total.textContent = "Total P&L: LTP unavailable";
      this.total.dataset.sign = "na";
    } else {
      this.total.textContent = `Total P&L: ${signed(total)}`;
      this.total.dataset.sign = sign(total);
    }
  }

  makeRow(p) {
    const tr = document.createElement("tr");
    tr.dataset.symbol = p.tradingsymbol;
    tr.dataset.product = p.product;
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = `${instrument(p)} `;
    const product = document.createElement("span");
    product.className = "meta";
    product.textContent = p.product;
    name.append(product);
    const action = document.createElement("td");
    action.append(rowButton("exit", "Exit", `Exit ${instrument(p)} ${p.product}`,
      () => this.exit(this.current(tr))));
    tr.append(name, cell("qty"), cell("avg"), cell("ltp"), cell("pnl"), action);
    return tr;
  }

  current(tr) {
    return this.positions.find((p) => p.tradingsymbol === tr.dataset.symbol
      && p.product === tr.dataset.product);
  }

  fill(tr, p) {
    tr.dataset.quantity = String(p.quantity);
    const [qty, avg, ltp, pnl] = ["qty", "avg", "ltp", "pnl"].map(
      (col) => tr.querySelector(`[data-col="${col}"]`));
    qty.textContent = String(p.quantity);
    avg.textContent = p.quantity ? money(p.average_price) : "–";
    const noLtp = p.ltp === null || p.ltp === undefined;
    ltp.textContent = noLtp ? "LTP unavailable" : money(p.ltp);
    ltp.classList.toggle("na", noLtp);
    const noPnl = p.pnl === null || p.pnl === undefined;
    pnl.textContent = noPnl ? "LTP unavailable" : signed(p.pnl);
    pnl.classList.toggle("na", noPnl);
    pnl.dataset.sign = noPnl ? "na" : sign(p.pnl);
    const button = tr.querySelector("button.exit");
    button.hidden = p.quantity === 0;
    button.disabled = this.busy;
  }

  setBusy(busy) {
    this.busy = busy;
    for (const button of this.root.querySelectorAll("button.exit, #kill")) {
      button.disabled = busy;
    }
  }

  async exit(p) {
    const side = p.quantity > 0 ? "SELL" : "BUY";
    const quantity = Math.abs(p.quantity);
    const ok = await confirmAction({
      title: `Exit ${instrument(p)}?`,
      text: `This sends a market-protected ${side} of ${quantity} ${instrument(p)} `
        + `${p.product}, split at the freeze limit, to flatten the position.`,
      confirmLabel: `Send ${side} ${quantity}`,
    });
    if (!ok) return;
    const account = this.getAccount();
    const body = { exchange: p.exchange, tradingsymbol: p.tradingsymbol, product: p.product };
    const key = `page-exit-${crypto.randomUUID()}`;
    await this.act(() => api(`/accounts/${encodeURIComponent(account)}/positions/exit`,
      { method: "POST", body, headers: { "Idempotency-Key": key } }),
    (report) => this.showExit(report));
  }

  async kill() {
    const open = this.openOrders();
    const held = this.open();
    const ok = await confirmAction({
      title: "Kill switch?",
      text: `This cancels ${open} open order${open === 1 ? "" : "s"} and flattens `
        + `${held.length} position${held.length === 1 ? "" : "s"} of account `
        + `${this.getAccount()} with market-protected orders; new orders are refused while it runs.`,
      items: held.map((p) => `${p.quantity > 0 ? "SELL" : "BUY"} ${Math.abs(p.quantity)} `
        + `${instrument(p)} ${p.product}`),
      confirmLabel: "Cancel all and flatten",
    });
    if (!ok) return;
    const account = this.getAccount();
    await this.act(() => api(`/accounts/${encodeURIComponent(account)}/kill`,
      { method: "POST" }), (report) => this.showKill(report));
  }

  async act(call, show) {
    this.setBusy(true);
    this.error.textContent = "";
    this.result.hidden = true;
    try {
      show(await call());
    } catch (err) {
      const refused = err instanceof ApiError && err.status === 409 ? " (refused now)" : "";
      this.error.textContent = `${err.message}${refused}`;
    } finally {
      this.setBusy(false);
    }
  }

  showResult(status, title, lines, failures) {
    this.result.hidden = false;
    this.result.dataset.status = status;
    const head = document.createElement("h3");
    head.className = "outcome";
    head.dataset.status = status === "done" ? "success" : "error";
    head.textContent = title;
    const list = document.createElement("ul");
    list.replaceChildren(...lines.map((line) => {
      const li = document.createElement("li");
      li.textContent = line;
      return li;
    }));
    this.result.replaceChildren(head, list);
    if (failures.length) this.error.textContent = failures.join("; ");
    this.result.focus({ preventScroll: true });
  }

  showExit(report) {
    const lines = report.orders.map((o) => `${o.order_type} ${o.order_id ?? o.tag}: `
      + `${o.status}, ${o.filled_quantity} filled${o.error ? ` (${o.error})` : ""}`);
    lines.push(report.remaining === null ? "Remaining: unknown"
      : `Remaining: ${report.remaining}`);
    const failures = report.status === "done" ? [] : [
      `Exit of ${report.exchange}:${report.tradingsymbol} incomplete`,
      ...report.warnings];
    this.showResult(report.status, `Exit ${report.exchange}:${report.tradingsymbol}: `
      + `${report.status}`, lines, failures);
  }

  showKill(report) {
    const remaining = Array.isArray(report.remaining)
      ? `${report.remaining.length} position(s) still held` : `positions unknown`;
    const lines = [
      `${report.cancelled.length} order(s) cancelled`,
      ...report.flattened.map((f) => `${f.exchange}:${f.tradingsymbol} ${f.product}: `
        + `${f.quantity} flattened by ${f.orders.length} order(s)`),
      remaining,
    ];
    const failures = report.status === "done" ? [] : [
      "Kill switch incomplete", ...report.errors, ...report.open_orders.map(
        (id) => `order ${id} still open`)];
    this.showResult(report.status, `Kill switch: ${report.status}`, lines, failures);
  }
}
