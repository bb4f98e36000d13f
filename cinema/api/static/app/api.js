// The public API, as any client calls it. The token lives in sessionStorage (gone with the
// tab); every failure becomes an ApiError whose `human` text the pages show.

const TOKEN_KEY = "cinemacore.token";
const EMAIL_KEY = "cinemacore.email";

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body || {};
    this.human = humanMessage(status, code, message, this.body);
  }
}

// What a person should read for each answer; the server's own short message otherwise.
export function humanMessage(status, code, message, body) {
  const retry = body && body.retry_after ? ` Try again in ${body.retry_after} s.` : " Try again in a moment.";
  if (String(code).startsWith("promo_code") && [404, 422].includes(status)) {
    return `Promo code not accepted${message ? `: ${message}` : ""}. Check it, or book without it.`;
  }
  if (status === 0) return "The cinema's server cannot be reached. Check your connection and try again.";
  if (status === 401) return code === "bad_credentials" || code === "invalid_credentials"
    ? "That email and password do not match an account."
    : "Please sign in (again) to continue.";
  if (status === 403) return "This page is for cinema staff only.";
  if (status === 429) return `Too many requests right now.${retry}`;
  if (status === 402) return message || "The card was declined. Try another card.";
  if (status === 409) {
    if (code === "seats_unavailable") return "Sorry, someone else just took one of those seats. The map is updated: pick other seats.";
    if (code === "sold_out") return "Sorry, this screening is sold out.";
    if (code === "email_taken") return "An account with this email already exists: sign in instead.";
    if (code === "already_checked_in") return "Already checked in.";
    if (code === "customer_limit_reached") return `You have reached the limit of tickets per customer for this screening${body.available !== undefined ? ` (${body.available} more allowed)` : ""}.`;
    if (code === "promo_code_exhausted") return "This promo code has been used up.";
    return message || "That cannot be done right now.";
  }
  if (status === 422) return message || "The request could not be processed.";
  if (status === 400) return message ? `Please check your input: ${message}.` : "Please check your input.";
  if (status === 404) return message || "Not found: it may have been removed.";
  if (status === 502) return "The payment provider did not answer. Nothing was charged; try again.";
  if (status === 503) return `The service is busy or briefly unavailable.${retry}`;
  if (status >= 500) return "Something went wrong on our side. Please try again.";
  return message || `Unexpected answer (${status}).`;
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get email() { return sessionStorage.getItem(EMAIL_KEY); },
  set(token, email) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(EMAIL_KEY, email);
    window.dispatchEvent(new Event("cinema-session"));
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EMAIL_KEY);
    window.dispatchEvent(new Event("cinema-session"));
  },
};

export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (session.token) init.headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "");
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    if (resp.status === 401 && session.token) session.clear();
    throw new ApiError(resp.status, err.code || "http_error", err.message || "", {
      ...err,
      retry_after: err.retry_after || resp.headers.get("Retry-After"),
    });
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body, headers) => api("POST", path, body, headers);
export const del = (path) => api("DELETE", path);

export async function signIn(email, password) {
  const reply = await post("/api/auth/token/", { email, password });
  session.set(reply.access_token, email);
}

export async function register(email, password) {
  await post("/api/auth/register/", { email, password });
  await signIn(email, password);
}

let configPromise = null;
export function config() {
  configPromise = configPromise || get("/api/config/");
  return configPromise;
}
