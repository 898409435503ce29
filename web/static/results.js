// What a placed basket came to, in its result panel: live progress while it runs, then each
// leg's result and rollback, the Clear / Repeat offer after a success, and a refusal's fields.

import { ApiError } from "./api.js";

const OUTCOME_TEXT = {
  success: "Every leg filled",
  rolled_back: "Rolled back: a leg failed and the others were undone",
  partial: "Partial: some legs failed and nothing was rolled back",
  rollback_failed: "ROLLBACK FAILED: exposure remains, see the legs",
};

export const esc = (s) => String(s ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function row(index, sent, { status, filled, orderId, error, rollback, action }) {
  const statusClass = `s-${String(status || "").toLowerCase().replace(/\s+/g, "-")}`;
  return `<tr data-leg="${index}" data-status="${esc(status)}">
    <th scope="row">${index + 1}</th>
    <td><span class="sym">${esc(sent.tradingsymbol)}</span>
      <span class="sub">${esc(sent.transaction_type)} ${esc(sent.quantity)}</span></td>
    <td><span class="status ${esc(statusClass)}">${esc(status)}</span>
      ${orderId ? `<span class="sub order-id">${esc(orderId)}</span>` : ""}
      ${error ? `<span class="sub err">${esc(error)}</span>` : ""}</td>
    <td class="num" data-label="Filled">${esc(filled)}</td>
    <td class="rollback" data-label="Rollback" data-action="${esc(action ?? "none")}">${
      esc(rollback || "–")}</td>
  </tr>`;
}

function table(rows) {
  return `<div class="table-wrap" tabindex="0" aria-label="Basket legs">
    <table class="legs-result"><thead><tr><th scope="col">#</th><th scope="col">Leg</th>
    <th scope="col">Status</th><th scope="col" class="num">Filled @ avg</th>
    <th scope="col">Rollback</th></tr></thead>
    <tbody>${rows}</tbody></table></div>`;
}

export class BasketResults {
  constructor(element) {
    this.el = element;
  }

  // flight: {body, live: Map legIndex -> {leg, rollback}} from the order stream.
  progress(flight) {
    const rows = flight.body.orders.map((leg, i) => {
      const live = flight.live.get(i) ?? {};
      const o = live.leg;
      const r = live.rollback;
      return row(i, leg, {
        status: o ? o.status : "working…",
        filled: o ? `${o.filled_quantity ?? 0} / ${o.quantity}` : "–",
        orderId: o?.order_id,
        rollback: r ? `reverse ${r.status} · ${r.filled_quantity ?? 0} filled` : "",
      });
    }).join("");
    this.el.hidden = false;
    this.el.dataset.status = "working";
    this.el.innerHTML = `<h3 class="outcome" data-status="working">Placing
      ${flight.body.orders.length} legs…</h3>${table(rows)}`;
  }

  show(body, result) {
    const legs = Array.isArray(result.legs) ? result.legs : [];
    const rows = legs.map((leg) => {
      const rb = leg.rollback;
      const acted = rb && rb.action && rb.action !== "none";
      const rollback = acted
        ? [rb.action, rb.status, rb.filled !== undefined && rb.filled !== null
          ? `${rb.filled} filled` : null, rb.order_id].filter(Boolean).join(" · ")
        : "";
      const filled = Number(leg.filled_quantity ?? 0);
      return row(Number(leg.index), body.orders[leg.index] ?? {}, {
        status: leg.status,
        filled: filled && leg.average_price
          ? `${filled} @ ${Number(leg.average_price).toFixed(2)}` : String(filled),
        orderId: leg.order_id,
        error: leg.error,
        rollback,
        action: acted ? rb.action : "none",
      });
    }).join("");
    const status = String(result.status);
    this.el.hidden = false;
    this.el.dataset.status = status;
    this.el.innerHTML = `
      <h3 class="outcome" data-status="${esc(status)}">${esc(status.replace("_", " "))}</h3>
      <p class="outcome-text">${esc(OUTCOME_TEXT[status] ?? "")}</p>
      <dl class="summary">
        <div><dt>Batch</dt><dd class="batch-id">${esc(result.batch_id)}</dd></div>
        <div><dt>Legs</dt><dd>${esc(result.succeeded)} of ${esc(result.total_orders)} filled,
          ${esc(result.failed)} failed</dd></div>
        <div><dt>Took</dt><dd>${esc(result.duration_ms)} ms</dd></div>
      </dl>${table(rows)}`;
    if (status !== "success") {
      this.el.querySelector(".outcome-text").setAttribute("role", "alert");
    }
    this.el.focus({ preventScroll: true });
    this.el.scrollIntoView({ block: "nearest" });
  }

  // After a success the ticket is not placeable as it stands: Clear empties it, Repeat
  // reviews the same legs again (the caller places them under a NEW Idempotency-Key).
  offerClearOrRepeat(submitButton, { clear, repeat }) {
    submitButton.hidden = true;
    const actions = document.createElement("div");
    actions.className = "basket-actions after-success";
    actions.innerHTML = `<button type="button" class="secondary" data-act="clear">Clear</button>
      <button type="button" data-act="repeat">Repeat</button>`;
    this.el.append(actions);
    const reset = () => {
      actions.remove();
      submitButton.hidden = false;
    };
    actions.querySelector('[data-act="clear"]').addEventListener("click", () => {
      reset();
      this.el.hidden = true;
      clear();
    });
    actions.querySelector('[data-act="repeat"]').addEventListener("click", () => {
      reset();
      repeat();
    });
  }

  // A refusal: a 422's fields go next to theirs (`showError(path, message, field)`); anything
  // else says whether submitting again is safe.
  failure(err, showError) {
    this.el.hidden = false;
    if (err instanceof ApiError && err.status === 422) {
      for (const f of err.fields) showError(f.path, f.message, f);
      this.el.dataset.status = "invalid";
      this.el.innerHTML = `<h3 class="outcome" data-status="invalid">Not placed</h3>
        <p class="outcome-text">${esc(err.fields.length || "")} problem(s): fix the
        marked fields. Nothing was sent to the broker.</p>`;
      return;
    }
    this.el.dataset.status = "error";
    const maybePlaced = !(err instanceof ApiError) || err.status === 0 || err.status >= 500;
    this.el.innerHTML = `<h3 class="outcome" data-status="error">Error</h3>
      <p class="outcome-text">${esc(err.message)}${maybePlaced
        ? " — submit again to retry the same basket (it will not be placed twice)." : ""}</p>`;
    showError("", err.message);
    this.el.scrollIntoView({ block: "nearest" });
  }
}
