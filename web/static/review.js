// The review a basket passes before it is placed: each leg (side, lots and units) and the
// margin and net premium when known, in the page's confirm dialog (Cancel has the focus).

import { confirmAction } from "./confirm.js";
import { describe } from "./margin.js";

export function reviewBasket(body, lotSizeOf, quote) {
  const items = body.orders.map((leg, i) => {
    const lot = lotSizeOf(leg.tradingsymbol) || 1;
    const price = leg.order_type === "LIMIT" ? `LIMIT ${leg.price}` : leg.order_type;
    return {
      text: `${i + 1}. ${leg.transaction_type} ${leg.tradingsymbol} · ${leg.quantity / lot} `
        + `lot(s) = ${leg.quantity} units · ${price} · ${leg.product}`,
      side: leg.transaction_type,
    };
  });
  const execution = body.execution === "hedge_first" ? "hedge first" : "parallel";
  return confirmAction({
    title: `Place ${body.orders.length}-leg basket?`,
    text: `${execution}, ${body.rollback_on_failure ? "rolled back" : "not rolled back"} if a `
      + `leg fails. ${quote ? describe(quote) : "Margin not known yet."}`,
    items,
    confirmLabel: "Confirm and place",
  });
}
