// One booking: while PENDING, the hold countdown and the payment form (Stripe Elements with
// a publishable key, a test-card form against a local Stripe server); it turns CONFIRMED on
// screen when the webhook lands (the page polls the booking), then shows the tickets' QR codes.

import { config, get, post } from "./api.js";
import { h, replace, venueTime } from "./dom.js";

const POLL_MS = 1000;
const STRIPE_JS = "https://js.stripe.com/v3/";

function seatLabel(ticket, seatsById) {
  if (ticket.seat_id === null) return "General admission";
  const seat = seatsById.get(ticket.seat_id);
  return seat ? `Row ${seat.row} · seat ${seat.seat}` : `Seat ${ticket.seat_id}`;
}

function summary(booking, seatsById) {
  const cur = booking.currency.toUpperCase();
  return h("section", { class: "summary", "aria-label": "Order summary" },
    h("ul", { class: "lines" }, booking.tickets.map((t) => h("li", {},
      h("span", {}, `${seatLabel(t, seatsById)} · ${t.category} · ${t.ticket_type}`),
      h("span", {}, `${t.price} ${cur}`)))),
    h("dl", { class: "totals" },
      h("dt", {}, "Tickets"), h("dd", {}, `${booking.subtotal} ${cur}`),
      booking.discount_minor ? [h("dt", {}, `Promo ${booking.promo_code || ""}`), h("dd", {}, `−${booking.discount} ${cur}`)] : null,
      h("dt", {}, "Fees"), h("dd", {}, `${booking.fees} ${cur}`),
      h("dt", {}, "Total"), h("dd", { class: "grand" }, `${booking.total} ${cur}`)));
}

function tickets(booking, seatsById) {
  return h("section", { class: "tickets", "aria-label": "Your tickets" },
    h("h2", {}, "Your tickets"),
    h("p", {}, "Show these codes at the door (on your phone or printed)."),
    h("ul", { class: "ticket-list" }, booking.tickets.map((t) => h("li", { class: "ticket" },
      t.qr_svg && t.qr_svg.startsWith("data:image/svg+xml")
        ? h("img", { src: t.qr_svg, alt: `QR code of ticket ${t.code}`, width: "160", height: "160" })
        : null,
      h("div", {},
        h("strong", {}, seatLabel(t, seatsById)),
        h("p", {}, `${t.category} · ${t.ticket_type} · ${t.price} ${booking.currency.toUpperCase()}`),
        t.code ? h("p", { class: "code" }, h("span", { class: "muted" }, "Code "), h("code", {}, t.code)) : h("p", {}, "No longer valid"),
        t.checked_in_at ? h("p", { class: "muted" }, "Checked in") : null)))));
}

function countdown(booking, onExpired) {
  const el = h("p", { class: "countdown", role: "timer", "aria-live": "off" });
  const end = Date.parse(booking.expires_at);
  let timer = null;
  const tick = () => {
    const left = Math.max(0, Math.round((end - Date.now()) / 1000));
    const m = Math.floor(left / 60);
    const s = String(left % 60).padStart(2, "0");
    replace(el, "Your seats are held for ", h("strong", {}, `${m}:${s}`), ". Pay before the time runs out.");
    if (left === 0) {
      clearInterval(timer);
      onExpired();
    }
  };
  tick();
  timer = setInterval(tick, 1000);
  return { el, stop: () => clearInterval(timer) };
}

function testCardForm(booking, helpers, onCharged) {
  const number = h("input", { id: "card-number", name: "cardnumber", inputmode: "numeric", autocomplete: "cc-number", placeholder: "4242 4242 4242 4242", required: true });
  const expiry = h("input", { id: "card-expiry", name: "exp", autocomplete: "cc-exp", placeholder: "MM/YY", required: true, maxlength: "5" });
  const cvc = h("input", { id: "card-cvc", name: "cvc", inputmode: "numeric", autocomplete: "cc-csc", placeholder: "123", required: true, maxlength: "4" });
  const slot = h("div", { class: "slot" });
  const pay = h("button", { type: "submit", class: "primary", id: "pay" }, `Pay ${booking.total} ${booking.currency.toUpperCase()}`);
  const fill = h("button", {
    type: "button",
    onclick: () => { number.value = "4242 4242 4242 4242"; expiry.value = "12/34"; cvc.value = "123"; pay.focus(); },
  }, "Use the test card");
  const form = h("form", {
    class: "pay test-card",
    "aria-label": "Pay with a test card",
    onsubmit: async (e) => {
      e.preventDefault();
      const [mm, yy] = expiry.value.split("/").map((x) => Number.parseInt(x, 10));
      const digits = number.value.replace(/\s+/g, "");
      if (!/^\d{12,19}$/.test(digits) || !(mm >= 1 && mm <= 12) || !(yy >= 0) || !/^\d{3,4}$/.test(cvc.value)) {
        replace(slot, h("div", { class: "error", role: "alert" }, "Check the card number, the expiry date (MM/YY) and the CVC."));
        return;
      }
      pay.disabled = true;
      replace(slot, h("p", { class: "muted" }, "Paying…"));
      try {
        await post(`/api/bookings/${booking.id}/test-payment/`, {
          number: digits, exp_month: mm, exp_year: yy < 100 ? 2000 + yy : yy, cvc: cvc.value,
        });
        replace(slot, h("p", { class: "ok", role: "status" }, "Payment accepted. Waiting for the confirmation…"));
        onCharged();
      } catch (err) {
        pay.disabled = false;
        helpers.showError(slot, err);
      }
    },
  },
  h("h2", {}, "Pay"),
  h("p", { class: "muted" }, "Test mode: this server pays through a local Stripe-compatible server. Card 4242 4242 4242 4242, any future date, any CVC; 4000 0000 0000 0341 is declined."),
  h("label", { for: number.id }, "Card number"), number,
  h("div", { class: "pair" },
    h("div", {}, h("label", { for: expiry.id }, "Expiry"), expiry),
    h("div", {}, h("label", { for: cvc.id }, "CVC"), cvc)),
  h("div", { class: "actions" }, pay, fill),
  slot);
  return form;
}

function loadStripe() {
  if (window.Stripe) return Promise.resolve(window.Stripe);
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = STRIPE_JS;
    script.onload = () => resolve(window.Stripe);
    script.onerror = () => reject(new Error("Stripe.js could not be loaded"));
    document.head.append(script);
  });
}

function stripeForm(booking, key, helpers, onCharged) {
  const mount = h("div", { class: "stripe-element" });
  const slot = h("div", { class: "slot" }, h("p", { class: "muted" }, "Loading the payment form…"));
  const pay = h("button", { type: "submit", class: "primary", id: "pay", disabled: true }, `Pay ${booking.total} ${booking.currency.toUpperCase()}`);
  let stripe = null;
  let elements = null;
  loadStripe().then((Stripe) => {
    stripe = Stripe(key);
    elements = stripe.elements({ clientSecret: booking.payment.client_secret });
    elements.create("payment").mount(mount);
    replace(slot);
    pay.disabled = false;
  }).catch(() => replace(slot, h("div", { class: "error", role: "alert" }, "The payment form could not be loaded. Check your connection and reload the page.")));
  return h("form", {
    class: "pay",
    "aria-label": "Pay by card",
    onsubmit: async (e) => {
      e.preventDefault();
      pay.disabled = true;
      const { error } = await stripe.confirmPayment({ elements, redirect: "if_required", confirmParams: { return_url: location.href } });
      if (error) {
        pay.disabled = false;
        replace(slot, h("div", { class: "error", role: "alert" }, error.message || "The payment did not go through."));
        return;
      }
      replace(slot, h("p", { class: "ok", role: "status" }, "Payment accepted. Waiting for the confirmation…"));
      onCharged();
    },
  }, h("h2", {}, "Pay"), mount, pay, slot);
}

function payment(booking, cfg, helpers, onCharged) {
  if (!booking.payment) {
    return h("p", { class: "error", role: "alert" }, "Online payment is not configured on this server: pay at the box office before the hold ends.");
  }
  if (cfg.stripe_publishable_key) return stripeForm(booking, cfg.stripe_publishable_key, helpers, onCharged);
  if (cfg.test_card_payments) return testCardForm(booking, helpers, onCharged);
  return h("p", { class: "error", role: "alert" }, "Card payment is not available right now: pay at the box office.");
}

const REASONS = {
  expired: "the hold expired before it was paid",
  payment_failed: "the payment failed",
  user_cancelled: "you cancelled it",
};

export async function checkoutView(main, bookingId, helpers) {
  const [first, cfg] = await Promise.all([get(`/api/bookings/${bookingId}/`), config()]);
  const screening = await get(`/api/screenings/${first.screening_id}/`);
  const movie = await helpers.movie(screening.movie_id);
  const seatsById = new Map();
  if (!screening.capacity) {
    const map = await get(`/api/screenings/${screening.id}/seats/`);
    for (const s of map.seats) seatsById.set(s.id, s);
  }
  const status = h("p", { class: "booking-status", role: "status", "aria-live": "polite" });
  const body = h("div", {});
  const slot = h("div", { class: "slot" });
  let poll = null;
  let clock = null;
  let expired = false;
  const stop = () => { if (poll) clearInterval(poll); if (clock) clock.stop(); poll = null; };

  const draw = (booking) => {
    const label = h("span", { class: `status status-${booking.status.toLowerCase()}` }, booking.status);
    if (booking.status === "CONFIRMED") {
      stop();
      replace(status, label, " Your booking is confirmed. Enjoy the film!");
      replace(body, summary(booking, seatsById), tickets(booking, seatsById));
      helpers.announce(`Booking ${booking.reference} confirmed.`);
    } else if (booking.status === "CANCELLED") {
      stop();
      const why = REASONS[booking.cancel_reason] || booking.cancel_reason || "it was cancelled";
      replace(status, label, ` This booking was cancelled: ${why}. Its seats are free again.`);
      replace(body, summary(booking, seatsById), h("p", {}, h("a", { class: "button", href: `#/screening/${booking.screening_id}` }, "Choose seats again")));
    } else if (!expired) {
      replace(status, label, " Your seats are on hold until you pay.");
    }
  };

  const onExpired = () => {
    expired = true;
    replace(status, h("span", { class: "status status-cancelled" }, "EXPIRED"), " Your hold has expired and the seats were released.");
    replace(body, h("div", { class: "error", role: "alert" }, "Time is up: your hold expired and the seats went back on sale. Nothing was charged."),
      h("p", {}, h("a", { class: "button", href: `#/screening/${first.screening_id}` }, "Choose seats again")));
  };

  const startPolling = () => {
    if (poll) return;
    poll = setInterval(async () => {
      try {
        const booking = await get(`/api/bookings/${bookingId}/`);
        if (booking.status !== "PENDING" || !expired) draw(booking);
      } catch (err) {
        helpers.showError(slot, err);
      }
    }, POLL_MS);
  };

  replace(main,
    h("p", {}, h("a", { href: "#/bookings" }, "← My bookings")),
    h("h1", {}, movie.title),
    h("p", { class: "when" }, venueTime(screening.starts_at, cfg.venue_time_zone)),
    h("p", {}, "Booking reference ", h("strong", { class: "reference" }, first.reference)),
    status, slot, body);

  draw(first);
  if (first.status === "PENDING") {
    clock = countdown(first, onExpired);
    const pay = payment(first, cfg, helpers, startPolling);
    replace(body, clock.el, summary(first, seatsById), pay);
    // Also paid elsewhere (another tab) or confirmed late: keep looking.
    startPolling();
    const focus = body.querySelector("input, button");
    if (focus) focus.focus({ preventScroll: true });
  }
  return stop;
}
