// Live seat status: the screening's event stream (GET /api/screenings/{id}/events), and
// polling of the seat map whenever the stream is down (Redis down: 503, too many streams:
// 429, a proxy that cuts it). Back on the stream as soon as it opens again.

import { get } from "./api.js";

const STATUS_BY_EVENT = { held: "LOCKED", released: "AVAILABLE", sold: "SOLD" };
const POLL_MS = 2000;
const RETRY_STREAM_MS = 10000;

export function watchSeats(screeningId, { onSeats, onCounts, onMode }) {
  let stream = null;
  let pollTimer = null;
  let retryTimer = null;
  let closed = false;

  const poll = async () => {
    try {
      const map = await get(`/api/screenings/${screeningId}/seats/`);
      if (closed) return;
      onSeats(map.seats);
      onCounts(map.counts);
    } catch { /* the next poll tries again */ }
  };
  const startPolling = () => {
    if (pollTimer || closed) return;
    onMode("polling");
    poll();
    pollTimer = setInterval(poll, POLL_MS);
  };
  const stopPolling = () => {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  };
  const open = () => {
    if (closed || typeof EventSource === "undefined") { startPolling(); return; }
    stream = new EventSource(`/api/screenings/${screeningId}/events`);
    stream.addEventListener("open", () => { stopPolling(); onMode("live"); });
    stream.addEventListener("resync", (e) => {
      const data = JSON.parse(e.data);
      stopPolling();
      onMode("live");
      onSeats(data.seats);
      onCounts(data.counts);
    });
    for (const [name, status] of Object.entries(STATUS_BY_EVENT)) {
      stream.addEventListener(name, (e) => {
        const data = JSON.parse(e.data);
        onSeats(data.seat_ids.map((id) => ({ id, status })));
        onCounts(data.counts);
      });
    }
    stream.addEventListener("error", () => {
      startPolling();
      if (stream.readyState === EventSource.CLOSED && !closed) {
        retryTimer = setTimeout(open, RETRY_STREAM_MS);
      }
    });
  };
  open();
  return {
    refresh: poll,
    close() {
      closed = true;
      stopPolling();
      if (retryTimer) clearTimeout(retryTimer);
      if (stream) stream.close();
    },
  };
}
