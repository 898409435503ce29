// What a table row acts with: its buttons (Cancel and Modify in the blotter, Exit in positions),
// each named for a screen reader by what it acts on, and the outcome it shows in the row.

export function rowButton(className, text, label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `secondary ${className}`;
  button.textContent = text;
  button.setAttribute("aria-label", label);
  button.addEventListener("click", onClick);
  return button;
}

export function rowOutcome() {
  const outcome = document.createElement("span");
  outcome.className = "row-outcome";
  outcome.setAttribute("role", "status");
  return outcome;
}

// state: pending, done or failed (the colour); text: what a trader reads.
export function showOutcome(outcome, state, text) {
  outcome.dataset.state = state;
  outcome.textContent = text;
}
