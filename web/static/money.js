// Rupee amounts as a trader reads them: ₹ with Indian digit grouping (₹2,55,63,168.00).

const RUPEES = new Intl.NumberFormat("en-IN", {
  style: "currency", currency: "INR", minimumFractionDigits: 2, maximumFractionDigits: 2,
});

export const rupees = (amount) => RUPEES.format(Number(amount));
