-- Payments through a provider's payment intents (Stripe), the webhook event log, ticket emails.

ALTER TABLE bookings
    ADD COLUMN payment_provider      text,
    ADD COLUMN payment_intent_id     text,
    ADD COLUMN payment_client_secret text,
    -- requires_payment: intent created, waiting for the customer; then succeeded, failed,
    -- canceled, refund_pending (paid too late, seats gone, refund not yet acknowledged), refunded.
    ADD COLUMN payment_status        text CHECK (payment_status IN (
        'requires_payment', 'succeeded', 'failed', 'canceled', 'refund_pending', 'refunded')),
    ADD COLUMN refund_id             text,
    -- The ticket email: sent at most once; a sender holds a short lease while it talks SMTP.
    ADD COLUMN tickets_sent_at       timestamptz,
    ADD COLUMN tickets_claimed_until timestamptz;

-- A webhook names the intent; one intent belongs to at most one booking.
CREATE UNIQUE INDEX bookings_payment_intent_uidx ON bookings (payment_intent_id)
    WHERE payment_intent_id IS NOT NULL;

-- Ended bookings whose intent may still be paid: the canceller's sweep reads these.
CREATE INDEX bookings_open_intent_idx ON bookings (id)
    WHERE status = 'CANCELLED' AND payment_status IN ('requires_payment', 'failed');

-- Every webhook event handled, written in the same transaction as the change it caused:
-- a duplicate delivery finds its id here and changes nothing.
CREATE TABLE payment_events (
    event_id          text PRIMARY KEY,
    type              text NOT NULL,
    payment_intent_id text,
    booking_id        bigint REFERENCES bookings (id),
    outcome           text,
    received_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_events_booking_idx ON payment_events (booking_id);
