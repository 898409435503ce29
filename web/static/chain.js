// The option chain: pick an underlying and an expiry; strikes around the money with the calls'
// and puts' last prices, a Buy and a Sell button per option that add the leg to the ticket, and
// templates (straddle, strangle, iron condor, bull call and bear put spreads around the money)
// that fill the ticket with one click. Legs are one lot, at market; the ticket is where they
// are changed, reviewed and placed. Prices come from GET /accounts/{id}/option-chain, then
// live: the chain's options (and the future that prices the money) are watched on the order
// socket, whose positions messages carry their last prices from the market ticks.

import { api } from "./api.js";

const UNDERLYING_KEY = "orderdesk.chain.underlying";
const DEFAULT_UNDERLYING = "NIFTY";

// Each template: legs as [side, CE|PE, strikes away from the money (in the chain's steps)].
const TEMPLATES = {
  straddle: { name: "Straddle", legs: [["BUY", "CE", 0], ["BUY", "PE", 0]] },
  strangle: { name: "Strangle", legs: [["BUY", "CE", 2], ["BUY", "PE", -2]] },
  iron_condor: { name: "Iron condor", legs: [
    ["SELL", "PE", -2], ["BUY", "PE", -4], ["SELL", "CE", 2], ["BUY", "CE", 4]] },
  bull_call_spread: { name: "Bull call spread", legs: [["BUY", "CE", 0], ["SELL", "CE", 2]] },
  bear_put_spread: { name: "Bear put spread", legs: [["BUY", "PE", 0], ["SELL", "PE", -2]] },
};
const SIDE_WORD = { BUY: "Buy", SELL: "Sell" };
const flip = (side) => (side === "BUY" ? "SELL" : "BUY");
const price = (v) => (v === null || v === undefined ? "–"
  : Number(v).toLocaleString("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 }));
const strikeText = (k) => Number(k).toLocaleString("en-IN", { maximumFractionDigits: 2 });

export class OptionChain {
  // basket: the ticket (its addLeg / replaceLegs); getAccount(): the account shown;
  // watch(instruments): have the order socket carry those instruments' last prices
  constructor(root, basket, getAccount, watch) {
    this.root = root;
    this.basket = basket;
    this.getAccount = getAccount;
    this.watch = watch;
    this.cells = new Map(); // tradingsymbol -> its last-price cell
    this.underlying = root.querySelector("#chain-underlying");
    this.expiry = root.querySelector("#chain-expiry");
    this.reverse = root.querySelector("#chain-reverse");
    this.money = root.querySelector("#chain-money");
    this.status = root.querySelector("#chain-status");
    this.error = root.querySelector("#chain-error");
    this.tbody = root.querySelector("#chain-table tbody");
    this.chain = null; // the last answer shown
    this.abort = null;
    this.underlying.addEventListener("change", () => {
      localStorage.setItem(UNDERLYING_KEY, this.underlying.value);
      this.load({ underlying: this.underlying.value });
    });
    this.expiry.addEventListener("change", () => this.load({ expiry: this.expiry.value }));
    root.querySelector("#chain-refresh").addEventListener("click", () => this.load());
    for (const button of root.querySelectorAll("[data-template]")) {
      button.addEventListener("click", () => this.fill(button.dataset.template));
    }
    this.tbody.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-side]");
      if (button) this.add(button.dataset.side, button.dataset.symbol);
    });
  }

  open() {
    this.chain = null;
    this.render();
    this.load({ underlying: localStorage.getItem(UNDERLYING_KEY) || DEFAULT_UNDERLYING });
  }

  // The chain of the picked underlying (the expiry kept unless the underlying changed).
  async load({ underlying = this.chain?.underlying, expiry } = {}) {
    const account = this.getAccount();
    if (!account || !underlying) return;
    const params = new URLSearchParams({ underlying });
    const keep = expiry ?? (underlying === this.chain?.underlying ? this.chain.expiry : null);
    if (keep) params.set("expiry", keep);
    this.abort?.abort();
    this.abort = new AbortController();
    this.root.setAttribute("aria-busy", "true");
    try {
      const chain = await api(
        `/accounts/${encodeURIComponent(account)}/option-chain?${params}`,
        { signal: this.abort.signal });
      if (this.getAccount() !== account) return;
      this.chain = chain;
      this.error.textContent = "";
      this.render();
    } catch (err) {
      if (err.name === "AbortError") return;
      const unknown = err.fields?.find((f) => f.path === "underlying" && f.rule === "unknown");
      if (unknown && underlying !== DEFAULT_UNDERLYING && !this.chain) {
        localStorage.removeItem(UNDERLYING_KEY); // a remembered name the master dropped
        this.load({ underlying: DEFAULT_UNDERLYING });
        return;
      }
      this.error.textContent = `Option chain: ${err.fields?.[0]?.message || err.message}`;
    } finally {
      this.root.removeAttribute("aria-busy");
    }
  }

  render() {
    const chain = this.chain;
    this.cells.clear();
    this.root.dataset.live = "false";
    if (!chain) {
      this.tbody.replaceChildren();
      this.money.textContent = "";
      return;
    }
    const names = chain.underlyings.includes(chain.underlying)
      ? chain.underlyings : [chain.underlying, ...chain.underlyings];
    this.underlying.replaceChildren(...names.map((n) => new Option(n, n)));
    this.underlying.value = chain.underlying;
    this.expiry.replaceChildren(...chain.expiries.map((e) => new Option(e, e)));
    this.expiry.value = chain.expiry;
    this.showMoney();
    this.tbody.replaceChildren(...chain.strikes.map((row) => this.row(row)));
    const future = chain.priced_from && chain.priced_from !== "parity" ? [chain.priced_from] : [];
    this.watch([...this.cells.keys(), ...future].map((s) => `${chain.exchange}:${s}`));
  }

  showMoney() {
    const chain = this.chain;
    this.money.textContent = chain.underlying_price === null
      ? `${chain.underlying}: no price · lot ${chain.lot_size}`
      : `${chain.underlying} ${price(chain.underlying_price)}${chain.priced_from === "parity"
        ? " (put-call parity)" : ` (${chain.priced_from})`} · ATM ${strikeText(chain.atm_strike)}`
        + ` · lot ${chain.lot_size}${this.root.dataset.live === "true" ? " · live" : ""}`;
  }

  // The order socket's watched last prices (a positions message): the cells that moved.
  tick(watched) {
    const chain = this.chain;
    if (!chain) return;
    for (const { exchange, tradingsymbol, ltp } of watched) {
      if (ltp === null || exchange !== chain.exchange) continue;
      const cell = this.cells.get(tradingsymbol);
      if (cell && this.root.dataset.live !== "true") {
        this.root.dataset.live = "true"; // the chain's prices now move with the market
        this.showMoney();
      }
      if (cell) {
        cell.textContent = price(ltp);
        cell.classList.remove("na");
      } else if (tradingsymbol === chain.priced_from && ltp !== chain.underlying_price) {
        this.chain = { ...chain, underlying_price: ltp };
        this.showMoney();
      }
    }
  }

  row(row) {
    const tr = document.createElement("tr");
    tr.dataset.strike = String(row.strike);
    if (row.strike === this.chain.atm_strike) tr.className = "atm";
    const strike = document.createElement("th");
    strike.scope = "row";
    strike.className = "num strike";
    strike.textContent = strikeText(row.strike);
    tr.append(this.buttons(row.ce), this.ltp(row.ce, "ce"), strike, this.ltp(row.pe, "pe"),
      this.buttons(row.pe));
    return tr;
  }

  ltp(quote, col) {
    const td = document.createElement("td");
    td.className = "num";
    td.dataset.col = `${col}-ltp`;
    td.textContent = quote ? price(quote.last_price) : "";
    if (quote && quote.last_price === null) td.classList.add("na");
    if (quote) this.cells.set(quote.tradingsymbol, td);
    return td;
  }

  buttons(quote) {
    const td = document.createElement("td");
    if (!quote) return td;
    const pair = document.createElement("div");
    pair.className = "bs";
    td.append(pair);
    for (const side of ["BUY", "SELL"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = `bs-${side.toLowerCase()}`;
      button.dataset.side = side;
      button.dataset.symbol = quote.tradingsymbol;
      button.textContent = side[0];
      button.setAttribute("aria-label", `${SIDE_WORD[side]} ${quote.tradingsymbol}`);
      pair.append(button);
    }
    return td;
  }

  // -- the ticket ---------------------------------------------------------------------

  // What the ticket needs of one of the chain's options (so it looks nothing up).
  legOf(side, symbol) {
    const chain = this.chain;
    const row = chain.strikes.find((r) => r.ce?.tradingsymbol === symbol
      || r.pe?.tradingsymbol === symbol);
    const kind = row.ce?.tradingsymbol === symbol ? "CE" : "PE";
    this.basket.known.set(symbol, {
      tradingsymbol: symbol, exchange: chain.exchange, name: chain.underlying,
      instrument_type: kind, lot_size: chain.lot_size, tick_size: chain.tick_size,
      expiry: chain.expiry, strike: row.strike,
    });
    return { tradingsymbol: symbol, transaction_type: side, lots: "1", order_type: "MARKET",
      product: "NRML" };
  }

  add(side, symbol) {
    const leg = this.legOf(side, symbol);
    const blank = this.basket.legs().every((li) =>
      !li.querySelector('[name="tradingsymbol"]').value.trim());
    if (blank || this.basket.placed) this.basket.replaceLegs([leg]); // a placed ticket: a new one
    else if (!this.basket.addLeg(leg)) {
      this.say(`The ticket is full: ${symbol} not added.`, true);
      return;
    }
    this.say(`Added: ${SIDE_WORD[side]} ${symbol}, 1 lot (leg ${this.basket.legs().length}).`);
    this.reveal();
  }

  fill(name) {
    const template = TEMPLATES[name];
    const chain = this.chain;
    if (!template || !chain) return;
    const at = chain.strikes.findIndex((r) => r.strike === chain.atm_strike);
    const legs = [];
    for (const [side, kind, away] of template.legs) {
      const quote = chain.strikes[at + away]?.[kind.toLowerCase()];
      if (!quote) {
        this.say(`${template.name}: the chain has no ${kind} ${Math.abs(away)} strikes `
          + `${away > 0 ? "above" : "below"} the money.`, true);
        return;
      }
      legs.push(this.legOf(this.reverse.checked ? flip(side) : side, quote.tradingsymbol));
    }
    this.basket.replaceLegs(legs);
    this.say(`${this.reverse.checked ? "Reversed " : ""}${template.name}: the ticket has `
      + `${legs.length} legs, 1 lot each.`);
    this.reveal();
  }

  // The ticket's last leg in view (the least scroll that shows it), so what was written shows.
  reveal() {
    this.basket.legs().at(-1)?.scrollIntoView({ block: "nearest" });
  }

  say(message, problem = false) {
    this.status.textContent = problem ? "" : message;
    this.error.textContent = problem ? message : "";
  }
}
