// The seat map, drawn from the hall layout (GET /api/halls/{id}/): rows with their labels,
// gaps where the layout has aisles, each category in its own colour AND shape, each seat's
// status (AVAILABLE / LOCKED / SOLD) as a pattern and a word in its label. Keyboard: the map
// is one tab stop; arrows move between seats, Home/End to a row's ends, Space/Enter select.

import { h } from "./dom.js";

const SHAPES = ["square", "circle", "diamond", "hexagon", "triangle", "pill"];
const STATUS_WORD = { AVAILABLE: "available", LOCKED: "held by another buyer", SOLD: "sold" };

export function categoryClasses(categories) {
  const classes = {};
  categories.forEach((category, i) => { classes[category] = `cat-${i % SHAPES.length}`; });
  return classes;
}

export function shapeName(index) {
  return SHAPES[index % SHAPES.length];
}

export class SeatMap {
  constructor({ layout, seats, categories, priceOf, limit, onChange, announce }) {
    this.limit = limit;
    this.onChange = onChange;
    this.announce = announce;
    this.priceOf = priceOf;
    this.classes = categoryClasses(categories);
    this.selected = new Set();
    this.buttons = new Map(); // seat id -> button
    this.grid = []; // rows of buttons (gaps left out), for arrow keys
    this.status = new Map(seats.map((s) => [s.id, s.status]));
    this.byPlace = new Map(seats.map((s) => [`${s.row}/${s.seat}`, s]));
    this.el = this.draw(layout);
  }

  draw(layout) {
    const width = Math.max(...layout.rows.map((r) => r.seats.length));
    const rows = layout.rows.map((row, r) => this.drawRow(row, r));
    const map = h("div", {
      class: "seatmap",
      role: "group",
      "aria-label": "Seat map. Use the arrow keys to move between seats, Space or Enter to select.",
      style: { "--cols": String(width + 2) },
      onkeydown: (e) => this.key(e),
    }, h("div", { class: "screen", "aria-hidden": "true" }, "Screen"), rows);
    const first = this.grid.flat().find((b) => this.status.get(Number(b.dataset.seatId)) === "AVAILABLE")
      || this.grid.flat()[0];
    if (first) first.tabIndex = 0;
    return map;
  }

  drawRow(row, r) {
    const cells = [];
    const line = [];
    row.seats.forEach((slot, c) => {
      if (slot === null) {
        cells.push(h("span", { class: "gap", "aria-hidden": "true" }));
        return;
      }
      const seat = this.byPlace.get(`${row.label}/${slot.number}`);
      if (!seat) return;
      const button = h("button", {
        type: "button",
        class: `seat ${this.classes[seat.category] || "cat-0"}`,
        tabindex: "-1",
        dataset: { seatId: String(seat.id), row: String(r), col: String(line.length) },
        onclick: () => this.toggle(seat.id),
        onfocus: () => this.rove(button),
      }, h("span", { class: "num", "aria-hidden": "true" }, String(slot.number)));
      button.seat = seat;
      this.buttons.set(seat.id, button);
      line.push(button);
      cells.push(button);
      this.paint(seat.id);
    });
    this.grid.push(line);
    const label = h("span", { class: "row-label", "aria-hidden": "true" }, row.label);
    return h("div", { class: "seat-row", role: "group", "aria-label": `Row ${row.label}` },
      label, cells, h("span", { class: "row-label", "aria-hidden": "true" }, row.label));
  }

  paint(id) {
    const button = this.buttons.get(id);
    if (!button) return;
    const status = this.status.get(id) || "SOLD";
    const selected = this.selected.has(id);
    const seat = button.seat;
    button.dataset.status = status;
    button.classList.toggle("selected", selected);
    button.setAttribute("aria-pressed", selected ? "true" : "false");
    button.setAttribute("aria-disabled", status !== "AVAILABLE" && !selected ? "true" : "false");
    const state = selected ? "selected" : STATUS_WORD[status];
    button.setAttribute("aria-label", `Row ${seat.row} seat ${seat.seat}, ${seat.category}, ${this.priceOf(seat.category)}, ${state}`);
    button.title = `Row ${seat.row}, seat ${seat.seat} (${seat.category}): ${state}`;
  }

  toggle(id) {
    if (this.selected.has(id)) {
      this.selected.delete(id);
    } else if (this.status.get(id) !== "AVAILABLE") {
      this.announce("That seat is not available.");
      return;
    } else if (this.selected.size >= this.limit) {
      this.announce(`You can book at most ${this.limit} seats at once.`);
      return;
    } else {
      this.selected.add(id);
    }
    this.paint(id);
    this.onChange(this.selectedSeats());
  }

  selectedSeats() {
    return [...this.selected].map((id) => this.buttons.get(id).seat);
  }

  // While our own booking is in flight (`busy`), the stream's news of our hold is no loss.
  setStatus(id, status) {
    if (!this.buttons.has(id) || this.status.get(id) === status) return;
    this.status.set(id, status);
    if (!this.busy) this.dropTaken();
    this.paint(id);
  }

  dropTaken() {
    const taken = [...this.selected].filter((id) => this.status.get(id) !== "AVAILABLE");
    for (const id of taken) {
      this.selected.delete(id);
      const seat = this.buttons.get(id).seat;
      this.announce(`Row ${seat.row} seat ${seat.seat} was just taken by someone else.`);
      this.paint(id);
    }
    if (taken.length) this.onChange(this.selectedSeats());
  }

  resync(seats) {
    for (const s of seats) this.setStatus(s.id, s.status);
  }

  clear() {
    const ids = [...this.selected];
    this.selected.clear();
    ids.forEach((id) => this.paint(id));
    this.onChange([]);
  }

  rove(button) {
    for (const b of this.buttons.values()) if (b !== button) b.tabIndex = -1;
    button.tabIndex = 0;
  }

  key(event) {
    const current = event.target.closest(".seat");
    if (!current) return;
    const r = Number(current.dataset.row);
    const c = Number(current.dataset.col);
    let next = null;
    const rowAt = (i) => this.grid[i] || [];
    if (event.key === "ArrowRight") next = rowAt(r)[c + 1];
    else if (event.key === "ArrowLeft") next = rowAt(r)[c - 1];
    else if (event.key === "Home") next = rowAt(r)[0];
    else if (event.key === "End") next = rowAt(r)[rowAt(r).length - 1];
    else if (event.key === "ArrowUp" || event.key === "ArrowDown") {
      const step = event.key === "ArrowUp" ? -1 : 1;
      for (let i = r + step; i >= 0 && i < this.grid.length && !next; i += step) {
        const line = rowAt(i);
        if (line.length) next = line[Math.min(c, line.length - 1)];
      }
    } else return;
    event.preventDefault();
    if (next) { this.rove(next); next.focus(); }
  }
}
