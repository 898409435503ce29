// One confirmation dialog for the actions that send orders (an exit, the kill switch): a modal
// <dialog> naming what will be sent; resolves true only on the confirm button (Cancel and
// Escape resolve false). Plain buttons, no form: the page's CSP has form-action 'none'.

const dialog = () => document.querySelector("#confirm");
let wired = false;

function wire(el) {
  if (wired) return;
  wired = true;
  el.querySelector("#confirm-ok").addEventListener("click", () => el.close("ok"));
  el.querySelector("#confirm-cancel").addEventListener("click", () => el.close("cancel"));
}

export function confirmAction({ title, text, items = [], confirmLabel }) {
  const el = dialog();
  wire(el);
  el.querySelector("#confirm-title").textContent = title;
  el.querySelector("#confirm-text").textContent = text;
  const list = el.querySelector("#confirm-items");
  list.replaceChildren(...items.map((item) => {
    const li = document.createElement("li");
    li.textContent = item.text ?? item; // a string, or {text, side} (BUY/SELL coloured)
    if (item.side) li.dataset.side = item.side;
    return li;
  }));
  list.hidden = items.length === 0;
  el.querySelector("#confirm-ok").textContent = confirmLabel;
  el.returnValue = "";
  return new Promise((resolve) => {
    el.addEventListener("close", () => resolve(el.returnValue === "ok"), { once: true });
    el.showModal();
    el.querySelector("#confirm-cancel").focus(); // the safe choice has the focus
  });
}
