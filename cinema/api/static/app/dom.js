// Building DOM nodes without innerHTML: every string becomes a text node or an attribute
// value, so nothing the API returns (titles, emails, error messages) is ever parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, v);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// Money: the API gives decimal strings in the currency's own digits ("12.50", "1200").
export function digitsOf(amount) {
  const dot = String(amount).indexOf(".");
  return dot < 0 ? 0 : String(amount).length - dot - 1;
}

export function toMinor(amount, digits) {
  return Math.round(Number(amount) * 10 ** digits);
}

export function money(minor, currency, digits) {
  return `${(minor / 10 ** digits).toFixed(digits)} ${String(currency).toUpperCase()}`;
}

export function formatAmount(amount, currency) {
  return `${amount} ${String(currency).toUpperCase()}`;
}

// Start times in the venue's time zone (GET /api/config/), whatever the browser's zone.
export function venueTime(iso, timeZone) {
  const when = new Date(iso);
  const fmt = new Intl.DateTimeFormat("en-GB", {
    timeZone,
    weekday: "short",
    day: "numeric",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
    timeZoneName: "short",
  });
  return fmt.format(when);
}

export function venueDay(iso, timeZone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date(iso));
}
