// Times as a trader on an Indian exchange reads them: the exchange's clock (IST), labelled.

const IST = new Intl.DateTimeFormat("en-GB", {
  timeZone: "Asia/Kolkata", hour: "2-digit", minute: "2-digit", second: "2-digit",
  hour12: false,
});

// A moment (Date) as "HH:MM:SS IST".
export const istTime = (date) => `${IST.format(date)} IST`;

// A broker timestamp ("2024-12-02 09:15:02": Kite's are IST already) as "09:15:02 IST".
export function istOfStamp(stamp) {
  const match = /(\d{2}:\d{2}:\d{2})/.exec(String(stamp ?? ""));
  return match ? `${match[1]} IST` : "–";
}
