-- Confirmed bookings whose ticket email has not gone out: the worker's ticket sweep reads
-- these (a sender that died mid-send, a task lost with Redis). Small: a row leaves the
-- index as soon as its email is sent.
CREATE INDEX bookings_unsent_tickets_idx ON bookings (id)
    WHERE status = 'CONFIRMED' AND tickets_sent_at IS NULL;
