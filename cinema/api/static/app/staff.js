// Staff pages (box office and admins): today's screenings with live counts, a screening's
// live seat map with the booking reference holding each seat, booking lookup, and the
// check-in page for the door (typed or scanned codes, a big green/red answer).

import { ApiError, config, get, post, session } from "./api.js";
import { authPanel } from "./auth.js";
import { h, replace, venueDay, venueTime } from "./dom.js";
import { watchSeats } from "./live.js";
import { SeatMap } from "./seatmap.js";

const main = document.getElementById("view");
const notice = document.getElementById("notice");
let cleanup = null;

const announce = (text) => replace(notice, text);
const errorBox = (err) => h("div", { class: "error", role: "alert" },
  err instanceof ApiError ? err.human : "Something went wrong in the page. Please reload it.");

const movies = new Map();
function movie(id) {
  if (!movies.has(id)) movies.set(id, get(`/api/movies/${id}/`).catch(() => ({ title: `Movie ${id}` })));
  return movies.get(id);
}

async function staffGate(render) {
  if (!session.token) {
    replace(main, h("h1", {}, "Staff sign-in"), authPanel("Sign in with a box office or admin account.", () => route()));
    return null;
  }
  await get("/api/admin/bookings/?limit=1"); // 403 for customers: the error says staff only
  return render();
}

async function bookingsOf(screeningId, status) {
  const all = [];
  for (let offset = 0; offset < 2000; offset += 200) {
    const page = await get(`/api/admin/bookings/?screening_id=${screeningId}&status=${status}&limit=200&offset=${offset}`);
    all.push(...page);
    if (page.length < 200) break;
  }
  return all;
}

async function todayView() {
  const cfg = await config();
  // Staff see cancelled screenings too (their reports, their refunds), marked as such.
  const screenings = await get("/api/screenings/?limit=500&include_cancelled=true");
  const today = venueDay(new Date().toISOString(), cfg.venue_time_zone);
  let list = screenings.filter((s) => venueDay(s.starts_at, cfg.venue_time_zone) === today);
  const title = list.length ? "Today's screenings" : "Next screenings";
  if (!list.length) list = screenings.slice(0, 10);
  const rows = await Promise.all(list.map(async (s) => {
    const [m, map, sold] = await Promise.all([
      movie(s.movie_id), get(`/api/screenings/${s.id}/seats/`), bookingsOf(s.id, "CONFIRMED"),
    ]);
    const revenue = sold.reduce((sum, b) => sum + b.total_minor, 0);
    const digits = sold[0] ? (String(sold[0].total).split(".")[1] || "").length : 2;
    return { s, m, counts: map.counts, revenue: `${(revenue / 10 ** digits).toFixed(digits)} ${s.currency.toUpperCase()}`, bookings: sold.length };
  }));
  const streams = [];
  const table = h("table", {},
    h("thead", {}, h("tr", {}, ["Time", "Movie", "Available", "Held", "Sold", "Bookings", "Revenue", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map(({ s, m, counts, revenue, bookings }) => {
      const cells = { available: h("td", {}, counts.available), locked: h("td", {}, counts.locked), sold: h("td", {}, counts.sold) };
      streams.push(watchSeats(s.id, {
        onSeats: () => {},
        onCounts: (c) => { for (const k of Object.keys(cells)) replace(cells[k], c[k]); },
        onMode: () => {},
      }));
      return h("tr", { dataset: { screeningId: String(s.id) } },
        h("td", {}, venueTime(s.starts_at, cfg.venue_time_zone)),
        h("td", {}, s.cancelled ? `${m.title} (cancelled)` : m.title),
        cells.available, cells.locked, cells.sold, h("td", {}, bookings), h("td", {}, revenue),
        h("td", {}, h("a", { href: `#/screening/${s.id}` }, "Seat map"), " · ",
          h("a", { href: `#/checkin/${s.id}` }, "Door")));
    })));
  replace(main, h("h1", {}, title),
    h("p", { class: "muted" }, `Counts update live. Times in ${cfg.venue_time_zone}. Revenue: confirmed bookings.`),
    rows.length ? h("div", { class: "table-wrap" }, table) : h("p", {}, "No upcoming screenings."));
  return () => streams.forEach((s) => s.close());
}

async function screeningView(id) {
  const cfg = await config();
  const screening = await get(`/api/screenings/${id}/`);
  const m = await movie(screening.movie_id);
  const seatMap = await get(`/api/screenings/${id}/seats/`);
  const counts = h("p", { class: "counts" });
  const showCounts = (c) => replace(counts, `${c.available} available · ${c.locked} held · ${c.sold} sold`);
  showCounts(seatMap.counts);
  const head = [h("p", {}, h("a", { href: "#/" }, "← Today")), h("h1", {}, m.title),
    h("p", { class: "when" }, venueTime(screening.starts_at, cfg.venue_time_zone)),
    screening.cancelled ? h("p", { class: "notice" }, `Cancelled: ${screening.cancel_reason || "no reason given"}`) : null];
  if (screening.capacity) {
    const live = watchSeats(id, { onSeats: () => {}, onCounts: showCounts, onMode: () => {} });
    replace(main, head, h("p", {}, "General admission: no seat map."), counts, await reportSection(id));
    return () => live.close();
  }
  const hall = await get(`/api/halls/${screening.hall_id}/`);
  const holders = new Map(); // seat id -> booking reference
  const map = new SeatMap({
    layout: hall.layout, seats: seatMap.seats, categories: hall.categories, limit: 0,
    priceOf: (c) => screening.prices[c] || "", announce: () => {}, onChange: () => {},
  });
  const label = () => {
    for (const [seatId, button] of map.buttons) {
      const ref = holders.get(seatId);
      const s = button.seat;
      const state = map.status.get(seatId);
      button.title = `Row ${s.row} seat ${s.seat} (${s.category}): ${state}${ref ? ` · booking ${ref}` : ""}`;
      button.setAttribute("aria-label", button.title);
      button.dataset.reference = ref || "";
    }
  };
  let pending = null;
  const loadHolders = async () => {
    const [held, sold] = await Promise.all([bookingsOf(id, "PENDING"), bookingsOf(id, "CONFIRMED")]);
    holders.clear();
    for (const b of [...held, ...sold]) for (const seatId of b.seat_ids) holders.set(seatId, b.reference);
    label();
  };
  const refresh = () => { clearTimeout(pending); pending = setTimeout(() => loadHolders().catch(() => {}), 300); };
  await loadHolders();
  const live = watchSeats(id, {
    onSeats: (seats) => { map.resync(seats); refresh(); },
    onCounts: showCounts,
    onMode: () => {},
  });
  map.toggle = () => {}; // staff look, they do not select
  replace(main, head, counts,
    h("p", { class: "muted" }, "Hover or focus a seat to see the booking reference holding it."),
    h("section", { class: "map-wrap", "aria-label": "Live seat map" }, map.el),
    await reportSection(id));
  label();
  return () => { live.close(); clearTimeout(pending); };
}

function verdict(ok, title, reason) {
  return h("div", { class: `verdict ${ok ? "good" : "bad"}`, role: "alert" },
    ok ? "✓ " : "✕ ", title, reason ? h("small", {}, reason) : null);
}

const INVALID = {
  other_screening: "This ticket is for another screening.",
  booking_cancelled: "The booking was cancelled.",
  booking_refunded: "The booking was refunded.",
  booking_not_confirmed: "The booking is not paid.",
};

const seatNames = new Map(); // screening id -> Promise<Map<seat id, "Row B · seat 4">>
function seatName(screeningId, seatId) {
  if (!seatNames.has(screeningId)) {
    seatNames.set(screeningId, get(`/api/screenings/${screeningId}/seats/`)
      .then((m) => new Map(m.seats.map((s) => [s.id, `Row ${s.row} · seat ${s.seat}`])))
      .catch(() => new Map()));
  }
  return seatNames.get(screeningId).then((names) => names.get(seatId) || `Seat ${seatId}`);
}

async function checkIn(code, screeningId, cfg) {
  try {
    const body = { code };
    if (screeningId) body.screening_id = screeningId;
    const ok = await post("/api/admin/checkin/", body);
    const where = ok.seat_id ? await seatName(ok.screening_id, ok.seat_id) : "General admission";
    return verdict(true, "Welcome in", `${where}${ok.ticket_type ? ` · ${ok.ticket_type}` : ""} · booking ${ok.booking_id}`);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.code === "already_checked_in") {
      const at = err.body.checked_in_at ? venueTime(err.body.checked_in_at, cfg.venue_time_zone) : "";
      const by = err.body.checked_in_by ? ` by ${err.body.checked_in_by.email || `staff ${err.body.checked_in_by.id}`}` : "";
      return verdict(false, "Already checked in", `at ${at}${by}`);
    }
    if (err.code === "ticket_not_valid") return verdict(false, "Not valid", INVALID[err.body.reason] || err.message);
    if (err.status === 404) return verdict(false, "Unknown ticket", "No ticket has this code: check it or ask for the booking reference.");
    return verdict(false, "Could not check", err.human);
  }
}

function scanner(onCode) {
  if (!("BarcodeDetector" in window) || !navigator.mediaDevices) {
    return h("p", { class: "muted" }, "Camera scanning is not available in this browser: type the code or use a USB scanner.");
  }
  const video = h("video", { class: "scanner", muted: true, playsinline: true, hidden: true, "aria-label": "Camera view" });
  let stream = null;
  let running = false;
  const stop = () => { running = false; if (stream) stream.getTracks().forEach((t) => t.stop()); video.hidden = true; };
  const start = async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    } catch {
      announce("The camera could not be opened: type the code instead.");
      return;
    }
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    running = true;
    let last = "";
    const loop = async () => {
      if (!running) return;
      try {
        const found = await detector.detect(video);
        if (found.length && found[0].rawValue !== last) { last = found[0].rawValue; await onCode(last); }
      } catch { /* a frame that cannot be read */ }
      setTimeout(loop, 250);
    };
    loop();
  };
  const button = h("button", { type: "button", onclick: () => (running ? (stop(), replace(button, "Scan with the camera")) : (start(), replace(button, "Stop the camera"))) }, "Scan with the camera");
  const el = h("div", { class: "scan" }, button, video);
  el.stop = stop;
  return el;
}

async function checkinView(screeningId) {
  const cfg = await config();
  const screenings = await get("/api/screenings/?limit=500");
  const choose = h("select", { id: "door-screening", "aria-label": "Screening at this door" },
    h("option", { value: "" }, "Any screening"),
    await Promise.all(screenings.slice(0, 100).map(async (s) => h("option", { value: String(s.id), selected: s.id === screeningId },
      `${venueTime(s.starts_at, cfg.venue_time_zone)} · ${(await movie(s.movie_id)).title}`))));
  const code = h("input", { id: "code", name: "code", autocomplete: "off", autocapitalize: "off", spellcheck: "false", required: true, maxlength: "200" });
  const result = h("div", { class: "result", "aria-live": "assertive" });
  const run = async (value) => {
    const text = value.trim();
    if (!text) return;
    replace(result, h("p", { class: "muted" }, "Checking…"));
    replace(result, await checkIn(text, Number(choose.value) || null, cfg));
    code.value = "";
    code.focus();
  };
  const cam = scanner(run);
  replace(main, h("h1", {}, "Check-in"),
    h("form", { class: "auth", onsubmit: (e) => { e.preventDefault(); run(code.value); } },
      h("label", { for: "door-screening" }, "Screening"), choose,
      h("label", { for: "code" }, "Ticket code (type it, or scan into this field)"), code,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Check in")),
      cam),
    result);
  code.focus();
  return () => cam.stop && cam.stop();
}

async function lookupView() {
  const cfg = await config();
  const input = h("input", { id: "lookup", name: "q", autocomplete: "off", placeholder: "ABCD1234 or someone@example.com", required: true });
  const out = h("div", {});
  const search = async () => {
    const q = input.value.trim();
    if (!q) return;
    const param = q.includes("@") ? `email=${encodeURIComponent(q)}` : `reference=${encodeURIComponent(q)}`;
    try {
      const found = await get(`/api/admin/bookings/?${param}&limit=50`);
      replace(out, found.length ? h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Reference", "Status", "Email", "Screening", "Tickets", "Total", "Created"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, found.map((b) => h("tr", {},
          h("td", {}, h("a", { href: `#/booking/${b.id}` }, b.reference)),
          h("td", {}, h("span", { class: `status status-${b.status.toLowerCase()}` }, b.status)),
          h("td", {}, b.email), h("td", {}, h("a", { href: `#/screening/${b.screening_id}` }, `#${b.screening_id}`)),
          h("td", {}, b.quantity), h("td", {}, `${b.total} ${b.currency.toUpperCase()}`),
          h("td", {}, venueTime(b.created_at, cfg.venue_time_zone))))))) : h("p", {}, "No booking matches."));
    } catch (err) {
      replace(out, errorBox(err));
    }
  };
  replace(main, h("h1", {}, "Find a booking"),
    h("form", { class: "auth", onsubmit: (e) => { e.preventDefault(); search(); } },
      h("label", { for: "lookup" }, "Booking reference or customer email"), input,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Search"))),
    out);
  input.focus();
}

// Refunds (POST /api/admin/bookings/{id}/refund): the whole booking or the ticked tickets.
function refundForm(b, slot) {
  const live = b.tickets.filter((t) => ["CONFIRMED", "COMPLETED", "NO_SHOW"].includes(t.status) && t.seat_id !== null);
  if (!["CONFIRMED", "COMPLETED", "NO_SHOW"].includes(b.status) || !live.length) return null;
  const reason = h("input", { id: "refund-reason", name: "reason", maxlength: "500", required: true, placeholder: "e.g. customer ill, seat broken" });
  const boxes = live.map((t) => h("input", { type: "checkbox", value: String(t.seat_id), id: `refund-${t.seat_id}` }));
  const button = h("button", { type: "submit", class: "primary danger" }, "Refund");
  return h("form", {
    class: "auth refund",
    "aria-label": "Refund",
    onsubmit: async (e) => {
      e.preventDefault();
      const seatIds = boxes.filter((x) => x.checked).map((x) => Number(x.value));
      if (!reason.value.trim()) { replace(slot, h("div", { class: "error", role: "alert" }, "Give a reason for the refund.")); return; }
      const what = seatIds.length ? `${seatIds.length} ticket(s)` : "the whole booking";
      if (!window.confirm(`Refund ${what} of ${b.reference}? The seats go back on sale at once.`)) return;
      button.disabled = true;
      try {
        const body = { reason: reason.value.trim() };
        if (seatIds.length) body.seat_ids = seatIds;
        const done = await post(`/api/admin/bookings/${b.id}/refund`, body);
        announce(`Refunded ${done.refunded} ${done.currency.toUpperCase()} of booking ${done.reference}.`);
        route();
      } catch (err) {
        button.disabled = false;
        replace(slot, errorBox(err));
      }
    },
  },
  h("h2", {}, "Refund"),
  h("p", { class: "muted" }, "Tick tickets to refund only those; none ticked refunds the whole booking."),
  h("ul", { class: "checks" }, live.map((t, i) => h("li", {}, boxes[i],
    h("label", { for: boxes[i].id }, `Row ${t.row} · seat ${t.seat} · ${t.ticket_type || ""}`)))),
  h("label", { for: reason.id }, "Reason"), reason,
  h("div", { class: "actions" }, button));
}

async function bookingView(id) {
  const cfg = await config();
  const b = await get(`/api/admin/bookings/${id}/`);
  const slot = h("div", { class: "slot" });
  const cur = b.currency.toUpperCase();
  replace(main, h("p", {}, h("a", { href: "#/lookup" }, "← Find a booking")),
    h("h1", {}, `Booking ${b.reference}`),
    h("p", {}, h("span", { class: `status status-${b.status.toLowerCase()}` }, b.status), ` · ${b.email} · ${b.total} ${cur}`,
      b.payment ? ` · payment ${b.payment.status}` : "", b.refunded_minor ? ` · refunded ${b.refunded} ${cur}` : ""),
    slot,
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Seat", "Category", "Type", "Status", "Checked in"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, b.tickets.map((t) => h("tr", {},
        h("td", {}, t.row ? `Row ${t.row} · ${t.seat}` : "General admission"), h("td", {}, t.category || ""),
        h("td", {}, t.ticket_type || ""), h("td", {}, t.status),
        h("td", {}, t.checked_in_at ? venueTime(t.checked_in_at, cfg.venue_time_zone) : "—")))))),
    refundForm(b, slot),
    (b.refunds || []).length ? [h("h2", {}, "Refunds"), h("ul", {}, b.refunds.map((r) => h("li", {},
      `${venueTime(r.created_at, cfg.venue_time_zone)} · ${r.amount} ${r.currency.toUpperCase()} · ${r.status} · ${r.reason}`)))] : null,
    h("h2", {}, "History"),
    h("ul", {}, b.history.map((e) => h("li", {}, `${venueTime(e.at, cfg.venue_time_zone)} · ${e.source} · ${e.event}${e.detail ? ` · ${e.detail}` : ""}`))));
}

// The sales report (admins): figures on the page, the same as CSV through an authorized
// fetch (a plain link could not send the token).
async function reportSection(screeningId) {
  let r;
  try {
    r = await get(`/api/admin/screenings/${screeningId}/report`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) return null; // box office: no report
    return errorBox(err);
  }
  const cur = r.currency.toUpperCase();
  const download = h("button", {
    type: "button",
    onclick: async () => {
      const resp = await fetch(`/api/admin/screenings/${screeningId}/report?format=csv`, { headers: { Authorization: `Bearer ${session.token}` } });
      if (!resp.ok) { announce("The CSV could not be downloaded; try again."); return; }
      const url = URL.createObjectURL(await resp.blob());
      const a = h("a", { href: url, download: `screening-${screeningId}-report.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    },
  }, "Download CSV");
  return h("section", { class: "report", "aria-label": "Sales report" },
    h("h2", {}, "Sales report"),
    h("dl", { class: "totals" },
      h("dt", {}, "Places sold / held / free"), h("dd", {}, `${r.places.sold} / ${r.places.held} / ${r.places.available} of ${r.places.total}`),
      h("dt", {}, "Checked in"), h("dd", {}, String(r.places.checked_in)),
      h("dt", {}, "Gross"), h("dd", {}, `${r.revenue.gross} ${cur}`),
      h("dt", {}, "Promo discounts"), h("dd", {}, `−${r.revenue.discounts} ${cur}`),
      h("dt", {}, "Fees"), h("dd", {}, `${r.revenue.fees} ${cur}`),
      h("dt", {}, "Net"), h("dd", { class: "grand" }, `${r.revenue.net} ${cur}`),
      h("dt", {}, "Refunds"), h("dd", {}, `${r.refunds.count} · ${r.refunds.amount} ${cur}`),
      h("dt", {}, "No-shows"), h("dd", {}, `${r.no_shows.bookings} booking(s), ${r.no_shows.tickets} ticket(s)`)),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Category", "Ticket type", "Tickets", "Amount"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, r.revenue.lines.map((l) => h("tr", {},
        h("td", {}, l.category), h("td", {}, l.ticket_type), h("td", {}, String(l.tickets)), h("td", {}, `${l.amount} ${cur}`)))))),
    h("div", { class: "actions" }, download, cancelScreeningButton(screeningId)));
}

function cancelScreeningButton(screeningId) {
  const button = h("button", {
    type: "button",
    class: "danger",
    onclick: async () => {
      const reason = window.prompt("Cancel this screening for everyone? Every booking is cancelled and refunded, each customer emailed. Reason:", "the screening was cancelled");
      if (!reason) return;
      button.disabled = true;
      try {
        await post(`/api/admin/screenings/${screeningId}/cancel`, { reason });
        announce("Screening cancelled: its bookings are being cancelled, refunded and emailed.");
      } catch (err) {
        button.disabled = false;
        announce(err instanceof ApiError ? err.human : "The screening could not be cancelled.");
      }
    },
  }, "Cancel the screening");
  return button;
}

// The audit log (GET /api/admin/audit/, admins only), newest first, refreshed every few seconds.
const FEED_MS = 5000;

function describeEntry(e) {
  const who = e.actor_id ? `${e.actor_role} #${e.actor_id}` : e.actor_role;
  const what = e.action.replaceAll(".", " ").replaceAll("_", " ");
  const ref = e.after && e.after.reference ? ` ${e.after.reference}` : "";
  const on = e.booking_id ? ` · booking ${e.booking_id}${ref}` : e.target_id ? ` · ${e.target} ${e.target_id}` : "";
  return { who, what, on };
}

async function activityView() {
  const cfg = await config();
  const list = h("ol", { class: "feed", reversed: true });
  const slot = h("div", {});
  const load = async () => {
    try {
      const entries = await get("/api/admin/audit/?limit=50");
      replace(slot);
      replace(list, entries.map((e) => {
        const { who, what, on } = describeEntry(e);
        return h("li", { dataset: { action: e.action, bookingId: String(e.booking_id || "") } },
          h("time", { datetime: e.at }, venueTime(e.at, cfg.venue_time_zone)), " · ",
          h("strong", {}, what), on, h("span", { class: "muted" }, ` · by ${who}`));
      }));
    } catch (err) {
      replace(slot, err instanceof ApiError && err.status === 403
        ? h("div", { class: "error", role: "alert" }, "The activity feed is for admins only.")
        : errorBox(err));
    }
  };
  await load();
  const timer = setInterval(load, FEED_MS);
  replace(main, h("h1", {}, "Activity"),
    h("p", { class: "muted" }, "Every change to bookings, check-ins, roles, the catalogue and promo codes, newest first."),
    slot, list);
  return () => clearInterval(timer);
}

const ROUTES = [
  [/^#\/activity$/, () => activityView()],
  [/^#?\/?$/, () => todayView()],
  [/^#\/screening\/(\d+)$/, (id) => screeningView(Number(id))],
  [/^#\/checkin(?:\/(\d+))?$/, (id) => checkinView(id ? Number(id) : null)],
  [/^#\/lookup$/, () => lookupView()],
  [/^#\/booking\/(\d+)$/, (id) => bookingView(Number(id))],
];

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const hash = location.hash || "#/";
  const found = ROUTES.find(([re]) => re.test(hash));
  replace(main, h("p", { class: "muted" }, "Loading…"));
  try {
    if (!found) { replace(main, h("h1", {}, "Page not found")); return; }
    const result = await staffGate(() => found[1](...hash.match(found[0]).slice(1)));
    if (typeof result === "function") cleanup = result;
  } catch (err) {
    replace(main, errorBox(err));
  }
}

function drawUser() {
  replace(document.getElementById("user"), session.token
    ? [h("span", { class: "muted" }, session.email || "signed in"), " ", h("button", { type: "button", class: "link", onclick: () => { session.clear(); route(); } }, "Sign out")]
    : null);
}

window.addEventListener("hashchange", route);
window.addEventListener("cinema-session", drawUser);
drawUser();
route();
