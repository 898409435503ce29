// The way out of the exchange's freeze limit (the server's 422 says it in lots): one leg above
// the freeze becomes several legs within it, each of at most the freeze's lots.

// The legs (their lots) that carry `lots` within a freeze of `maxLots` each.
export function splitLots(lots, maxLots) {
  const parts = [];
  for (let left = lots; left > 0; left -= maxLots) parts.push(Math.min(left, maxLots));
  return parts;
}

// The freeze's lots of an instrument row; null when it has none (or no instrument).
export function freezeLots(inst) {
  return inst?.freeze_quantity ? Math.max(1, Math.floor(inst.freeze_quantity / inst.lot_size))
    : null;
}

// Under the leg's fields, with its quantity error: a button that splits the leg into legs within the freeze
// (`basket.addLeg` makes each; they go right after the leg, the ticket's limit permitting).
export function offerSplit(basket, li) {
  const inst = basket.instrumentOf(li);
  const maxLots = freezeLots(inst);
  const lotsInput = li.querySelector('[name="lots"]');
  const lots = Number(lotsInput.value);
  if (maxLots === null || !(lots > maxLots) || li.querySelector("button.split")) return;
  const parts = splitLots(lots, maxLots);
  const room = basket.legs().length - 1 + parts.length <= 10;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "secondary split";
  button.textContent = `Split into ${parts.length} legs of at most ${maxLots} lots`
    + (room ? "" : " (more than the ticket's 10 legs)");
  button.disabled = !room;
  button.addEventListener("click", () => {
    const value = (name) => li.querySelector(`[name="${name}"]`).value;
    const values = Object.fromEntries(["tradingsymbol", "transaction_type", "order_type",
      "price", "product"].map((name) => [name, value(name)]));
    button.remove();
    lotsInput.value = String(parts[0]);
    basket.clearError(li, "quantity");
    basket.describe(li);
    let after = li;
    for (const part of parts.slice(1)) {
      const added = basket.addLeg({ ...values, lots: String(part) });
      if (!added) break;
      after.after(added);
      after = added;
    }
    basket.renumber();
    basket.margin.schedule();
    lotsInput.focus();
  });
  li.querySelector(".remove").after(button); // a row of its own, under the leg's fields
}
