// The ticket's "Saved" control: save the ticket's legs under a name, load them back, delete
// them. Kept by orderdesk per account (GET/PUT/DELETE /accounts/{id}/baskets), so a basket
// follows the trader to another browser. Saving and loading never place anything: loading
// fills the ticket (Basket.replaceLegs) for review, and only "Place basket" places it.

import { api, ApiError } from "./api.js";
import { confirmAction } from "./confirm.js";

const IST = new Intl.DateTimeFormat("en-IN", {
  timeZone: "Asia/Kolkata", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit",
  hour12: false,
});

const when = (unix) => `${IST.format(new Date(unix * 1000))} IST`;

export class SavedBaskets {
  constructor(root, basket) {
    this.root = root;
    this.basket = basket;
    this.name = root.querySelector("#saved-name");
    this.list = root.querySelector("#saved-list");
    this.saveButton = root.querySelector("#saved-save");
    this.loadButton = root.querySelector("#saved-load");
    this.deleteButton = root.querySelector("#saved-delete");
    this.status = root.querySelector("#saved-status");
    this.error = root.querySelector("#saved-error");
    this.names = [];
    this.account = null;
    this.saveButton.addEventListener("click", () => this.save());
    this.name.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault(); // Enter saves (it never places)
        this.save();
      }
    });
    this.loadButton.addEventListener("click", () => this.load());
    this.deleteButton.addEventListener("click", () => this.remove());
    this.render([]);
  }

  path(name) {
    const base = `/accounts/${encodeURIComponent(this.account)}/baskets`;
    return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
  }

  // The account's list (at sign-in and on every account change).
  async open(account) {
    this.account = account ?? null;
    this.say("");
    this.render([]);
    if (!this.account) return;
    await this.refresh();
  }

  async refresh(selected) {
    try {
      const body = await api(this.path());
      this.render(body.baskets, selected);
    } catch (err) {
      this.fail(err);
    }
  }

  render(baskets, selected) {
    this.names = baskets.map((b) => b.name);
    const options = baskets.map((b) => new Option(
      `${b.name} · ${b.legs} leg${b.legs === 1 ? "" : "s"} · saved ${when(b.updated_at)}`, b.name));
    if (!options.length) options.push(new Option("No saved baskets", ""));
    this.list.replaceChildren(...options);
    if (selected && this.names.includes(selected)) this.list.value = selected;
    const none = this.names.length === 0;
    this.list.disabled = none;
    this.loadButton.disabled = none;
    this.deleteButton.disabled = none;
  }

  say(text, error = "") {
    this.status.textContent = text;
    this.error.textContent = error;
  }

  fail(err) {
    const detail = err instanceof ApiError && err.fields.length
      ? err.fields.map((f) => f.message).join("; ") : err.message;
    this.say("", detail);
  }

  async save() {
    const name = this.name.value.trim();
    if (!this.account) return;
    this.say("");
    if (!name) {
      this.say("", "Enter a name to save the ticket under.");
      this.name.focus();
      return;
    }
    const problems = this.basket.validate().filter(([path]) => path.startsWith("orders"));
    if (problems.length) {
      this.say("", `Fix the ticket first: ${problems.map(([, m]) => m).join("; ")}.`);
      return;
    }
    if (this.names.includes(name) && !await confirmAction({
      title: `Replace “${name}”?`,
      text: "The saved basket of that name gets this ticket's legs instead.",
      confirmLabel: "Replace",
    })) return;
    const orders = this.basket.body().orders;
    try {
      await api(this.path(name), { method: "PUT", body: { orders } });
    } catch (err) {
      this.fail(err);
      return;
    }
    await this.refresh(name); // the list first: the message then describes what it shows
    const legs = `${orders.length} leg${orders.length === 1 ? "" : "s"}`;
    this.status.textContent = `Saved “${name}”: ${legs}. Nothing was placed.`;
  }

  async load() {
    const name = this.list.value;
    if (!name || !this.account) return;
    this.say("");
    let saved;
    try {
      saved = await api(this.path(name));
    } catch (err) {
      this.fail(err);
      return;
    }
    // Lots need each instrument's lot size: look up the symbols the ticket does not know yet.
    const unknown = [...new Set(saved.orders.map((o) => o.tradingsymbol))]
      .filter((symbol) => !this.basket.known.has(symbol));
    await Promise.all(unknown.map((symbol) => this.basket.lookup(symbol, 10).catch(() => [])));
    const legs = saved.orders.map((o) => {
      const lot = this.basket.known.get(o.tradingsymbol)?.lot_size || 1;
      const values = {
        tradingsymbol: o.tradingsymbol, transaction_type: o.transaction_type,
        lots: String(o.quantity / lot), order_type: o.order_type, product: o.product,
      };
      if (o.price !== undefined) values.price = String(o.price);
      return values;
    });
    this.basket.replaceLegs(legs);
    this.name.value = name;
    this.say(`Loaded “${name}”: ${legs.length} leg${legs.length === 1 ? "" : "s"} in the `
      + "ticket, not placed. Review them, then Place basket.");
  }

  async remove() {
    const name = this.list.value;
    if (!name || !this.account) return;
    this.say("");
    if (!await confirmAction({
      title: `Delete “${name}”?`,
      text: "The saved basket is deleted for every browser. The ticket stays as it is.",
      confirmLabel: "Delete",
    })) return;
    try {
      await api(this.path(name), { method: "DELETE" });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) {
        this.fail(err);
        return;
      }
    }
    await this.refresh();
    this.status.textContent = `Deleted “${name}”.`;
  }
}
