-- Refunds (issue 13, item 3): a refund is one row of `refunds` (the booking, the amount in
-- ISO 4217 minor units, why, its state at the provider) and one `refund_items` row per ticket
-- it gives back (reservation, seat, that ticket's share). Written by cinema_refund_tickets
-- only (docs/concurrency.md A.3.2, C.8), which also ends the refunded reservations so their
-- seats or places are bookable again at once.

-- What has been refunded or is being refunded (failed refunds included: that money is owed
-- to the customer and handled by staff, never refunded twice), kept by the same
-- statement that writes the refund: the CHECK is the last word on "never more than was paid".
ALTER TABLE bookings
    ADD COLUMN refunded_minor bigint NOT NULL DEFAULT 0
        CHECK (refunded_minor >= 0 AND refunded_minor <= amount);

-- refund_failed: a refund the provider could not make (the booking's money is still ours).
ALTER TABLE bookings DROP CONSTRAINT bookings_payment_status_check;
ALTER TABLE bookings ADD CONSTRAINT bookings_payment_status_check CHECK (payment_status IN (
    'requires_payment', 'succeeded', 'failed', 'canceled', 'refund_pending', 'refunded',
    'refund_failed'));

-- A cancelled screening takes no new bookings (trigger below); the worker ends every
-- booking it has (cinema/refunds/screenings.py).
ALTER TABLE screenings
    ADD COLUMN cancelled_at  timestamptz,
    ADD COLUMN cancel_reason text;
CREATE INDEX screenings_cancelled_idx ON screenings (id) WHERE cancelled_at IS NOT NULL;

CREATE TABLE refunds (
    id                  bigserial PRIMARY KEY,
    booking_id          bigint NOT NULL REFERENCES bookings (id),
    amount_minor        bigint NOT NULL CHECK (amount_minor >= 0),
    currency            char(3) NOT NULL,
    reason              text NOT NULL,
    -- staff (box office, admin), customer (self-cancel), screening (a cancelled screening)
    source              text NOT NULL CHECK (source IN ('staff', 'customer', 'screening')),
    -- pending: recorded, not yet confirmed by the provider; refunded; failed.
    status              text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'refunded', 'failed')),
    -- Derived from the booking and its refunded seats: the provider's idempotency key.
    idempotency_key     text NOT NULL,
    provider_refund_id  text,
    requested_by        bigint REFERENCES users (id) ON DELETE SET NULL,
    -- The provider call happens after the commit, under a lease; retried by the worker.
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    claimed_until       timestamptz,
    last_error          text,
    -- The refund email, sent at most once (a sender holds a short lease while it talks SMTP).
    email_sent_at       timestamptz,
    email_claimed_until timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX refunds_idempotency_uidx ON refunds (idempotency_key);
CREATE UNIQUE INDEX refunds_provider_uidx ON refunds (provider_refund_id)
    WHERE provider_refund_id IS NOT NULL;
CREATE INDEX refunds_booking_idx ON refunds (booking_id, id);
-- The worker's retry sweep: refunds the provider has not taken yet.
CREATE INDEX refunds_unsubmitted_idx ON refunds (next_attempt_at)
    WHERE provider_refund_id IS NULL AND status = 'pending';
CREATE INDEX refunds_unmailed_idx ON refunds (id) WHERE email_sent_at IS NULL;

CREATE TABLE refund_items (
    refund_id      bigint NOT NULL REFERENCES refunds (id),
    reservation_id bigint NOT NULL REFERENCES reservations (id),
    seat_id        bigint NOT NULL,
    amount_minor   bigint NOT NULL CHECK (amount_minor >= 0),
    PRIMARY KEY (refund_id, reservation_id)
);
-- The last word on "a ticket is refunded once".
CREATE UNIQUE INDEX refund_items_reservation_uidx ON refund_items (reservation_id);

-- Rule A.3.2 / C.8: refund some tickets of one CONFIRMED booking. Locks the booking row (and
-- nothing before it), then, in new statements (rule A.4), decides from its live tickets.
-- p_seat_ids / p_amounts: parallel, each ticket's share (cinema/refunds/rules.py: computed
-- from the booking's amount and ticket prices, which never change); p_whole: refund every
-- live ticket (p_seat_ids lists them all). Returns the refund id, or NULL and why not:
-- not_found, booking_pending, booking_not_refundable, already_refunded,
-- seats_not_in_booking / seats_already_refunded (with the seats in `seats`).
CREATE FUNCTION cinema_refund_tickets(
    p_booking_id bigint, p_seat_ids bigint[], p_amounts bigint[], p_whole boolean,
    p_reason text, p_source text, p_requested_by bigint,
    OUT refund_id bigint, OUT refused text, OUT seats bigint[]
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    b bookings;
    live bigint[];
    wanted bigint[];
    total bigint;
    left_live integer;
BEGIN
    SELECT * INTO b FROM bookings WHERE id = p_booking_id FOR UPDATE;
    IF NOT FOUND THEN
        refused := 'not_found';
        RETURN;
    END IF;
    IF b.status = 'PENDING' THEN
        refused := 'booking_pending';
        RETURN;
    END IF;
    IF b.status <> 'CONFIRMED' THEN
        refused := CASE WHEN b.refunded_minor > 0 THEN 'already_refunded'
                        ELSE 'booking_not_refundable' END;
        RETURN;
    END IF;
    live := ARRAY(SELECT r.seat_id FROM reservations r
                   WHERE r.booking_id = b.id AND r.status = 'CONFIRMED' ORDER BY r.seat_id);
    wanted := CASE WHEN p_whole THEN live
                   ELSE ARRAY(SELECT DISTINCT u FROM unnest(p_seat_ids) u ORDER BY u) END;
    IF cardinality(live) = 0 THEN
        refused := 'already_refunded';
        RETURN;
    END IF;
    seats := ARRAY(SELECT u FROM unnest(wanted) u WHERE NOT EXISTS (
                     SELECT 1 FROM reservations r WHERE r.booking_id = b.id AND r.seat_id = u)
                   ORDER BY u);
    IF cardinality(seats) > 0 THEN
        refused := 'seats_not_in_booking';
        RETURN;
    END IF;
    seats := ARRAY(SELECT u FROM unnest(wanted) u WHERE u <> ALL (live) ORDER BY u);
    IF cardinality(seats) > 0 THEN
        refused := 'seats_already_refunded';
        RETURN;
    END IF;
    seats := wanted;
    SELECT coalesce(sum(a.amount), 0) INTO total
      FROM unnest(p_seat_ids, p_amounts) AS a (seat_id, amount) WHERE a.seat_id = ANY (wanted);
    INSERT INTO refunds (booking_id, amount_minor, currency, reason, source, idempotency_key,
                         requested_by, status)
    VALUES (b.id, total, b.currency, p_reason, p_source,
            'cinemacore-refund-' || b.id || '-' || b.reference || '-'
                || array_to_string(wanted, '.'),
            p_requested_by,
            -- nothing to give back at a provider: done at once
            CASE WHEN b.payment_intent_id IS NULL OR total = 0 THEN 'refunded' ELSE 'pending' END)
    RETURNING id INTO refund_id;
    INSERT INTO refund_items (refund_id, reservation_id, seat_id, amount_minor)
    SELECT refund_id, r.id, r.seat_id, a.amount
      FROM reservations r JOIN unnest(p_seat_ids, p_amounts) AS a (seat_id, amount)
        ON a.seat_id = r.seat_id
     WHERE r.booking_id = b.id AND r.seat_id = ANY (wanted);
    -- The seats are free again as this commits (reservations_live_seat_uidx skips them).
    UPDATE reservations SET status = 'CANCELLED'
     WHERE booking_id = b.id AND seat_id = ANY (wanted) AND status = 'CONFIRMED';
    left_live := cardinality(live) - cardinality(wanted);
    UPDATE bookings SET
        refunded_minor = refunded_minor + total,
        status = CASE WHEN left_live = 0 THEN 'CANCELLED'::booking_status ELSE status END,
        cancel_reason = CASE WHEN left_live = 0 THEN 'refunded' ELSE cancel_reason END,
        payment_status = cinema_refunds_payment_status(b.id, payment_status),
        updated_at = now()
     WHERE id = b.id;
END
$$;

-- What a booking's payment says once it has refunds: any pending -> refund_pending, else any
-- failed -> refund_failed, else refunded. No refunds (or no payment): unchanged.
CREATE FUNCTION cinema_refunds_payment_status(p_booking_id bigint, p_current text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_current IS NULL OR NOT EXISTS (SELECT 1 FROM refunds WHERE booking_id = p_booking_id)
            THEN p_current
        WHEN EXISTS (SELECT 1 FROM refunds WHERE booking_id = p_booking_id AND status = 'pending')
            THEN 'refund_pending'
        WHEN EXISTS (SELECT 1 FROM refunds WHERE booking_id = p_booking_id AND status = 'failed')
            THEN 'refund_failed'
        ELSE 'refunded' END
$$;

-- A cancelled screening takes no new booking. A booking whose transaction began before the
-- cancel committed may still get in: the worker's pass over the screening ends it after.
CREATE FUNCTION cinema_refuse_cancelled_screening() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM screenings WHERE id = NEW.screening_id
                AND cancelled_at IS NOT NULL) THEN
        RAISE EXCEPTION 'screening_cancelled' USING ERRCODE = 'CC001',
            DETAIL = 'screening ' || NEW.screening_id || ' is cancelled';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER bookings_refuse_cancelled_screening BEFORE INSERT ON bookings
    FOR EACH ROW EXECUTE FUNCTION cinema_refuse_cancelled_screening();
