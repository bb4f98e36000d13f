-- Screening cancellation notices (issue 13, item 3; after db/013_refunds.sql): every booking
-- a screening cancellation ends (a PENDING one cancelled with reason screening_cancelled, a
-- paid one refunded with source 'screening') gets one email saying so. One row per booking,
-- written by its sender (cinema/store/notices.py): a short lease while it talks SMTP, then
-- `sent_at` right after the server accepted the message, so a worker killed and restarted
-- sends to the others and not again to those done. The refund email of a 'screening' refund
-- waits for this notice, which covers it (its `email_sent_at` is set with `sent_at`).
CREATE TABLE cancellation_notices (
    booking_id    bigint PRIMARY KEY REFERENCES bookings (id),
    screening_id  bigint NOT NULL REFERENCES screenings (id),
    attempts      integer NOT NULL DEFAULT 0,
    claimed_until timestamptz,
    sent_at       timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cancellation_notices_screening_idx ON cancellation_notices (screening_id);

-- Bookings of screenings cancelled before this file that were already ended: their customers
-- were told (or not) as before; mark them done so that deploying this does not mail them a
-- day late. Bookings such a cancellation has not ended yet get the notice.
INSERT INTO cancellation_notices (booking_id, screening_id, sent_at)
SELECT b.id, b.screening_id, now()
  FROM bookings b JOIN screenings s ON s.id = b.screening_id
 WHERE s.cancelled_at IS NOT NULL AND b.status NOT IN ('PENDING', 'CONFIRMED')
ON CONFLICT (booking_id) DO NOTHING;
