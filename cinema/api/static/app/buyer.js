// The buyer's pages: movies -> screenings -> seat map (or a quantity picker) -> checkout ->
// confirmed tickets, and "My bookings". A hash router: every view is a function that fills
// <main> and may return a cleanup (closing a live stream, stopping a countdown).

import { ApiError, config, del, get, post, session } from "./api.js";
import { authPanel } from "./auth.js";
import { checkoutView } from "./checkout.js";
import { digitsOf, h, money, replace, toMinor, venueDay, venueTime } from "./dom.js";
import { watchSeats } from "./live.js";
import { categoryClasses, SeatMap } from "./seatmap.js";

const main = document.getElementById("view");
const notice = document.getElementById("notice");
let cleanup = null;

export function announce(text) {
  replace(notice, text);
}

export function errorBox(err) {
  const text = err instanceof ApiError ? err.human : "Something went wrong in the page. Please reload it.";
  if (!(err instanceof ApiError)) console.error(err);
  return h("div", { class: "error", role: "alert" }, text);
}

export function showError(slot, err) {
  replace(slot, errorBox(err));
  slot.scrollIntoView({ block: "nearest" });
}

const movies = new Map();
async function movie(id) {
  if (!movies.has(id)) movies.set(id, get(`/api/movies/${id}/`));
  return movies.get(id);
}

async function moviesView() {
  const [list, screenings, cfg] = await Promise.all([
    get("/api/movies/?limit=500"), get("/api/screenings/?limit=500"), config(),
  ]);
  const next = new Map();
  for (const s of screenings) if (!next.has(s.movie_id)) next.set(s.movie_id, s);
  const showing = list.filter((m) => next.has(m.id));
  replace(main,
    h("h1", {}, "Now showing"),
    showing.length ? null : h("p", {}, "No screenings are scheduled right now."),
    h("ul", { class: "cards" }, showing.map((m) => h("li", { class: "card" },
      h("h2", {}, h("a", { href: `#/movie/${m.id}` }, m.title)),
      h("p", { class: "muted" }, `${m.duration_minutes} min · next: ${venueTime(next.get(m.id).starts_at, cfg.venue_time_zone)}`),
      m.description ? h("p", {}, m.description) : null,
      h("a", { class: "button", href: `#/movie/${m.id}` }, "Screenings")))));
}

async function movieView(id) {
  const [m, screenings, cfg] = await Promise.all([
    movie(id), get(`/api/screenings/?movie_id=${id}&limit=500`), config(),
  ]);
  const days = new Map();
  for (const s of screenings) {
    const day = venueDay(s.starts_at, cfg.venue_time_zone);
    if (!days.has(day)) days.set(day, []);
    days.get(day).push(s);
  }
  replace(main,
    h("p", {}, h("a", { href: "#/" }, "← All movies")),
    h("h1", {}, m.title),
    m.description ? h("p", {}, m.description) : null,
    h("p", { class: "muted" }, `Times are the cinema's local time (${cfg.venue_time_zone}).`),
    screenings.length ? null : h("p", {}, "No upcoming screenings."),
    [...days.entries()].map(([day, list]) => h("section", {},
      h("h2", {}, day),
      h("ul", { class: "times" }, list.map((s) => h("li", {},
        h("a", { class: "button", href: `#/screening/${s.id}` },
          venueTime(s.starts_at, cfg.venue_time_zone),
          s.capacity ? " · general admission" : "")))))));
}

function priceTable(screening) {
  const digits = digitsOf(Object.values(screening.prices)[0] || "0");
  const unit = (type, category) => {
    const base = screening.prices[category];
    if (base === undefined) return null;
    if (type.prices) return type.prices[category] === undefined ? null : toMinor(type.prices[category], digits);
    return Math.max(0, toMinor(base, digits) - (type.discount ? toMinor(type.discount, digits) : 0));
  };
  return { digits, unit };
}

// An estimate before booking: the booking's answer has the exact total (promo included).
function estimate(screening, lines) {
  const { digits, unit } = priceTable(screening);
  const subtotal = lines.reduce((sum, l) => sum + (unit(l.type, l.category) || 0), 0);
  const fees = screening.fees
    ? toMinor(screening.fees.per_ticket, digits) * lines.length + Math.round(subtotal * Number(screening.fees.percent) / 100)
    : 0;
  return { subtotal, fees, total: subtotal + fees, digits };
}

function legend(screening, categories, classes) {
  const { digits, unit } = priceTable(screening);
  const cur = screening.currency;
  return h("section", { class: "legend", "aria-label": "Legend and prices" },
    h("h2", {}, "Seats and prices"),
    h("ul", {}, categories.map((c) => h("li", {},
      h("span", { class: `swatch seat ${classes[c]}`, "data-status": "AVAILABLE", "aria-hidden": "true" }),
      h("strong", {}, c), " ",
      screening.ticket_types.map((t) => {
        const p = unit(t, c);
        return p === null ? null : h("span", { class: "price" }, `${t.name} ${money(p, cur, digits)}`);
      })))),
    h("ul", { class: "statuses" },
      h("li", {}, h("span", { class: "swatch seat cat-0", "data-status": "AVAILABLE", "aria-hidden": "true" }), "Available"),
      h("li", {}, h("span", { class: "swatch seat cat-0 selected", "data-status": "AVAILABLE", "aria-hidden": "true" }), "Your selection"),
      h("li", {}, h("span", { class: "swatch seat cat-0", "data-status": "LOCKED", "aria-hidden": "true" }), "Held by another buyer"),
      h("li", {}, h("span", { class: "swatch seat cat-0", "data-status": "SOLD", "aria-hidden": "true" }), "Sold")),
    screening.fees ? h("p", { class: "muted" }, feesText(screening.fees, cur)) : null);
}

function feesText(fees, currency) {
  const parts = [];
  if (Number(fees.per_ticket)) parts.push(`${fees.per_ticket} ${currency.toUpperCase()} per ticket`);
  if (Number(fees.percent)) parts.push(`${fees.percent}% of the ticket prices`);
  return `Booking fees: ${parts.join(" + ")}.`;
}

// `leave`: stop watching the map first, or the stream's news of our own hold would read as
// "taken by someone else" before the checkout opens.
async function book(screening, body, slot, button, leave) {
  if (!session.token) {
    replace(slot, authPanel("Sign in or create an account to book.", () => book(screening, body, slot, button, leave)));
    return null;
  }
  button.disabled = true;
  replace(slot, h("p", { class: "muted" }, "Holding your seats…"));
  try {
    const booking = await post("/api/bookings/", { screening_id: screening.id, ...body },
      { "Idempotency-Key": crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}` });
    leave();
    location.hash = `#/booking/${booking.id}`;
  } catch (err) {
    button.disabled = false;
    showError(slot, err);
    return err;
  }
  return null;
}

async function screeningView(id) {
  const [screening, cfg, seatMap] = await Promise.all([
    get(`/api/screenings/${id}/`), config(), get(`/api/screenings/${id}/seats/`),
  ]);
  const m = await movie(screening.movie_id);
  const head = [
    h("p", {}, h("a", { href: `#/movie/${m.id}` }, `← ${m.title}: all screenings`)),
    h("h1", {}, m.title),
    h("p", { class: "when" }, venueTime(screening.starts_at, cfg.venue_time_zone)),
  ];
  if (screening.cancelled) {  // a link from before the cancel: say so, offer no seats
    replace(main, head, h("p", { class: "notice", role: "status" }, "This screening has been cancelled; it is no longer for sale."));
    return null;
  }
  const counts = h("p", { class: "counts", "aria-live": "off" });
  const mode = h("span", { class: "mode" });
  const showCounts = (c) => replace(counts, `${c.available} available · ${c.locked} held · ${c.sold} sold`);
  showCounts(seatMap.counts);
  const limit = Math.min(cfg.max_tickets_per_booking, screening.max_tickets_per_customer || Infinity);
  if (screening.capacity) return gaView(screening, head, counts, mode, showCounts, limit);
  const hall = await get(`/api/halls/${screening.hall_id}/`);
  const categories = hall.categories;
  const classes = categoryClasses(categories);
  const { digits, unit } = priceTable(screening);
  const basic = screening.ticket_types[0];
  const panel = h("div", { class: "selection" });
  const slot = h("div", { class: "slot" });
  const bookButton = h("button", { type: "button", class: "primary", disabled: true }, "Book");
  const promo = h("input", { id: "promo", name: "promo", autocomplete: "off", maxlength: "32", pattern: "[A-Za-z0-9_-]+" });
  const types = new Map(); // seat id -> ticket type code
  const map = new SeatMap({
    layout: hall.layout,
    seats: seatMap.seats,
    categories,
    limit,
    priceOf: (c) => (unit(basic, c) === null ? "" : money(unit(basic, c), screening.currency, digits)),
    announce,
    onChange: () => drawSelection(),
  });
  const typeOf = (seat) => screening.ticket_types.find((t) => t.code === (types.get(seat.id) || basic.code));
  const drawSelection = () => {
    const seats = map.selectedSeats();
    bookButton.disabled = seats.length === 0;
    if (!seats.length) {
      replace(panel, h("p", { class: "muted" }, `Select up to ${limit} seats on the map.`));
      return;
    }
    const est = estimate(screening, seats.map((s) => ({ category: s.category, type: typeOf(s) })));
    replace(panel, h("ul", { class: "lines" }, seats.map((s) => h("li", {},
      h("span", {}, `Row ${s.row} · seat ${s.seat} · ${s.category}`),
      screening.ticket_types.length > 1
        ? h("select", {
          "aria-label": `Ticket type for row ${s.row} seat ${s.seat}`,
          onchange: (e) => { types.set(s.id, e.target.value); drawSelection(); },
        }, screening.ticket_types.filter((t) => unit(t, s.category) !== null).map((t) => h("option", {
          value: t.code, selected: typeOf(s).code === t.code,
        }, `${t.name} · ${money(unit(t, s.category), screening.currency, digits)}${t.min_age_note ? ` (${t.min_age_note})` : ""}`)))
        : h("span", {}, money(unit(basic, s.category), screening.currency, digits))))),
    h("p", { class: "total" }, `Tickets ${money(est.subtotal, screening.currency, digits)} + fees ${money(est.fees, screening.currency, digits)} = `,
      h("strong", {}, money(est.total, screening.currency, digits)),
      h("span", { class: "muted" }, " (a promo code is applied when you book)")));
  };
  drawSelection();
  bookButton.addEventListener("click", async () => {
    const seats = map.selectedSeats().map((s) => ({ seat_id: s.id, ticket_type: typeOf(s).code }));
    const body = { seats };
    if (promo.value.trim()) body.promo_code = promo.value.trim();
    map.busy = true;
    const err = await book(screening, body, slot, bookButton, () => live.close());
    map.busy = false;
    if (!err) return; // booked: the checkout opens
    if (err instanceof ApiError && err.body.seat_ids) {
      map.resync(err.body.seat_ids.map((sid) => ({ id: sid, status: "LOCKED" })));
      live.refresh();
    }
    map.dropTaken();
  });
  const live = watchSeats(screening.id, {
    onSeats: (seats) => map.resync(seats),
    onCounts: showCounts,
    onMode: (m2) => replace(mode, m2 === "live" ? "● live" : "○ updating every few seconds"),
  });
  replace(main, head,
    h("div", { class: "booking-layout" },
      h("section", { class: "map-wrap", "aria-label": "Seat map" }, h("p", {}, counts, " ", mode), map.el),
      h("aside", { class: "side" },
        h("h2", {}, "Your seats"), panel,
        h("label", { for: "promo" }, "Promo code (optional)"), promo,
        bookButton, slot),
      legend(screening, categories, classes)));
  return () => live.close();
}

function gaView(screening, head, counts, mode, showCounts, limit) {
  const { digits, unit } = priceTable(screening);
  const slot = h("div", { class: "slot" });
  const total = h("p", { class: "total" });
  const bookButton = h("button", { type: "button", class: "primary", disabled: true }, "Book");
  const promo = h("input", { id: "promo", name: "promo", autocomplete: "off", maxlength: "32" });
  const inputs = screening.ticket_types.filter((t) => unit(t, "general") !== null).map((t) => h("input", {
    type: "number", min: "0", max: String(limit), value: "0", inputmode: "numeric",
    id: `qty-${t.code}`, "data-type": t.code, class: "qty",
    oninput: () => update(),
  }));
  const update = () => {
    const lines = [];
    for (const input of inputs) {
      const n = Math.max(0, Math.min(limit, Number.parseInt(input.value, 10) || 0));
      const type = screening.ticket_types.find((t) => t.code === input.dataset.type);
      for (let i = 0; i < n; i++) lines.push({ category: "general", type });
    }
    bookButton.disabled = lines.length === 0 || lines.length > limit;
    const est = estimate(screening, lines);
    replace(total, lines.length > limit
      ? `At most ${limit} tickets per booking.`
      : [`${lines.length} ticket(s): `, h("strong", {}, money(est.total, screening.currency, digits)), " incl. fees"]);
  };
  update();
  bookButton.addEventListener("click", () => {
    const tickets = inputs.map((i) => ({ ticket_type: i.dataset.type, quantity: Number.parseInt(i.value, 10) || 0 }))
      .filter((t) => t.quantity > 0);
    const body = { tickets };
    if (promo.value.trim()) body.promo_code = promo.value.trim();
    book(screening, body, slot, bookButton, () => live.close());
  });
  const live = watchSeats(screening.id, {
    onSeats: () => {},
    onCounts: showCounts,
    onMode: (m2) => replace(mode, m2 === "live" ? "● live" : "○ updating every few seconds"),
  });
  replace(main, head,
    h("section", { class: "ga" },
      h("h2", {}, "General admission: no assigned seats"),
      h("p", {}, counts, " ", mode),
      h("div", { class: "qty-grid" }, inputs.map((input) => {
        const t = screening.ticket_types.find((x) => x.code === input.dataset.type);
        return h("div", {}, h("label", { for: input.id }, `${t.name} · ${money(unit(t, "general"), screening.currency, digits)}`), input);
      })),
      total,
      h("label", { for: "promo" }, "Promo code (optional)"), promo,
      bookButton, slot));
  return () => live.close();
}

async function myBookingsView() {
  if (!session.token) {
    replace(main, h("h1", {}, "My bookings"), authPanel("Sign in to see your bookings.", () => route()));
    return;
  }
  const [list, cfg] = await Promise.all([get("/api/my-bookings/?limit=100"), config()]);
  const rows = await Promise.all(list.map(async (b) => {
    const s = await get(`/api/screenings/${b.screening_id}/`).catch(() => null);
    const m = s ? await movie(s.movie_id).catch(() => null) : null;
    return { b, s, m };
  }));
  const slot = h("div", { class: "slot" });
  replace(main, h("h1", {}, "My bookings"), slot,
    rows.length ? null : h("p", {}, "You have no bookings yet. ", h("a", { href: "#/" }, "Find a movie")),
    h("ul", { class: "cards" }, rows.map(({ b, s, m }) => h("li", { class: "card", dataset: { reference: b.reference } },
      h("h2", {}, m ? m.title : `Screening ${b.screening_id}`),
      s ? h("p", {}, venueTime(s.starts_at, cfg.venue_time_zone)) : null,
      h("p", {}, h("span", { class: `status status-${b.status.toLowerCase()}` }, b.status), ` · ${b.reference} · ${b.quantity} ticket(s) · ${b.total} ${b.currency.toUpperCase()}`),
      h("a", { class: "button", href: `#/booking/${b.id}` }, b.status === "CONFIRMED" ? "Tickets" : "Details"),
      b.status === "PENDING" ? h("button", {
        type: "button",
        onclick: async (e) => {
          e.target.disabled = true;
          try {
            await del(`/api/bookings/${b.id}/`);
            announce(`Booking ${b.reference} cancelled; its seats are free again.`);
            route();
          } catch (err) {
            e.target.disabled = false;
            showError(slot, err);
          }
        },
      }, "Cancel") : null))));
}

const ROUTES = [
  [/^#?\/?$/, () => moviesView()],
  [/^#\/movie\/(\d+)$/, (id) => movieView(Number(id))],
  [/^#\/screening\/(\d+)$/, (id) => screeningView(Number(id))],
  [/^#\/booking\/(\d+)$/, (id) => checkoutView(main, Number(id), { movie, announce, showError, errorBox })],
  [/^#\/bookings$/, () => myBookingsView()],
];

export async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const hash = location.hash || "#/";
  const found = ROUTES.find(([re]) => re.test(hash));
  replace(main, h("p", { class: "muted" }, "Loading…"));
  try {
    if (!found) {
      replace(main, h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "#/" }, "Back to the movies")));
      return;
    }
    const result = await found[1](...hash.match(found[0]).slice(1));
    if (typeof result === "function") cleanup = result;
  } catch (err) {
    replace(main, errorBox(err), h("p", {}, h("a", { href: "#/" }, "Back to the movies")));
  }
  const heading = main.querySelector("h1");
  if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
}

function drawUser() {
  const slot = document.getElementById("user");
  replace(slot, session.token
    ? [h("span", { class: "muted" }, session.email), " ", h("button", { type: "button", class: "link", onclick: () => { session.clear(); route(); } }, "Sign out")]
    : h("a", { href: "#/bookings" }, "Sign in"));
}

window.addEventListener("hashchange", route);
window.addEventListener("cinema-session", drawUser);
drawUser();
route();
