-- General admission (a capacity, no seat map) and per-customer ticket limits
-- (docs/concurrency.md, rules A.3 (a) and (b)).
--
-- A general-admission screening's places are seat rows (category 'general') of a hall of its
-- own that the API never shows as a hall: reservations, expiry, cancellation, payments, the
-- seat-map counts and reservations_live_seat_uidx then work for places exactly as for seats.
-- There is no hot counter row: a buyer locks free place rows FOR UPDATE SKIP LOCKED, so
-- buyers of the same screening never wait for each other.

ALTER TABLE halls ADD COLUMN general_admission boolean NOT NULL DEFAULT false;

ALTER TABLE screenings
    ADD COLUMN capacity integer CHECK (capacity > 0),
    ADD COLUMN max_tickets_per_customer integer CHECK (max_tickets_per_customer > 0);

-- One row per (customer, limited screening), created on the customer's first booking of it:
-- the lock that queues one customer's parallel bookings (rule A.3 (a)). It holds no count;
-- the live tickets are counted after the lock, so nothing needs giving back. No foreign keys:
-- it is only a lock, and a booking for a missing user fails on bookings_user_id_fkey.
CREATE TABLE customer_screenings (
    user_id      bigint NOT NULL,
    screening_id bigint NOT NULL,
    PRIMARY KEY (user_id, screening_id)
);

-- Rule A.3 (a): lock the customer's row for this screening, then count the tickets they
-- hold (live, not lapsed) in a new statement, so the count sees every booking committed by
-- whoever held the lock before. At most one per transaction, before any seat or place.
CREATE OR REPLACE FUNCTION cinema_customer_tickets(p_user_id bigint, p_screening_id bigint)
RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO customer_screenings (user_id, screening_id) VALUES (p_user_id, p_screening_id)
    ON CONFLICT DO NOTHING;
    PERFORM 1 FROM customer_screenings
     WHERE user_id = p_user_id AND screening_id = p_screening_id FOR UPDATE;
    RETURN (SELECT count(*)::integer
              FROM bookings b JOIN reservations r ON r.booking_id = b.id
             WHERE b.user_id = p_user_id AND b.screening_id = p_screening_id
               AND r.status <> 'CANCELLED'
               AND NOT (r.status = 'PENDING' AND r.expires_at <= now()));
END
$$;

-- Rule A.3 (b) for places: up to p_quantity free places of a general-admission screening,
-- locked until the caller's transaction ends. Fewer than p_quantity: not enough are free
-- (the caller writes nothing). SKIP LOCKED never waits, so this takes part in no deadlock;
-- a place another buyer is taking right now is not free for us.
CREATE OR REPLACE FUNCTION cinema_take_places(
    p_screening_id bigint, p_hall_id bigint, p_quantity integer
) RETURNS bigint[] LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    mine bigint[] := '{}';
    tried bigint[] := '{}';
    locked bigint[];
    lapsed bigint[];
BEGIN
    LOOP
        -- 1. Lock places that looked free (or lapsed) at this statement's snapshot. Our own
        --    earlier rounds' rows are excluded by hand: SKIP LOCKED does not skip our locks.
        SELECT coalesce(array_agg(c.id), '{}') INTO locked
          FROM (SELECT s.id FROM seats s
                 WHERE s.hall_id = p_hall_id AND s.id <> ALL (tried)
                   AND NOT EXISTS (
                       SELECT 1 FROM reservations r
                        WHERE r.screening_id = p_screening_id AND r.seat_id = s.id
                          AND r.status <> 'CANCELLED'
                          AND NOT (r.status = 'PENDING' AND r.expires_at <= now()))
                 ORDER BY s.id
                 LIMIT p_quantity - cardinality(mine)
                 FOR UPDATE OF s SKIP LOCKED) c;
        EXIT WHEN cardinality(locked) = 0;
        tried := tried || locked;

        -- 2. A new snapshot, taken after the locks: a place whose last holder committed a
        --    reservation after step 1's snapshot shows up here (rule A.4).
        SELECT coalesce(array_agg(DISTINCT r.booking_id), '{}') INTO lapsed
          FROM reservations r
         WHERE r.screening_id = p_screening_id AND r.seat_id = ANY (locked)
           AND r.status = 'PENDING' AND r.expires_at <= now();
        IF cardinality(lapsed) > 0 THEN
            -- 3. End the lapsed holds on them (rule A.3 (c): their bookings, ascending id).
            PERFORM cinema_end_bookings(lapsed, 'CANCELLED', 'expired', false);
        END IF;

        -- 4. Keep the places nobody holds now (a lapsed hold may have been paid meanwhile).
        mine := mine || ARRAY(
            SELECT u FROM unnest(locked) u
             WHERE NOT EXISTS (SELECT 1 FROM reservations r
                                WHERE r.screening_id = p_screening_id AND r.seat_id = u
                                  AND r.status <> 'CANCELLED')
             ORDER BY u);
        EXIT WHEN cardinality(mine) >= p_quantity;
    END LOOP;
    RETURN ARRAY(SELECT unnest(mine) ORDER BY 1);
END
$$;

-- The one entry point that writes a booking (db/007_promo_codes.sql's, extended; its first
-- fifteen parameters unchanged). The steps follow the lock order of docs/concurrency.md A.3:
-- (a) the customer's row, when the screening limits tickets per customer; (b) the seats
-- (ascending id) or the places (SKIP LOCKED), with (c) lapsed holds on them; (d) the promo
-- use; then the inserts. `refused` names why nothing was written: seats_unavailable
-- (`taken` lists them), sold_out (`available`: how many places were free and not being
-- taken), customer_limit_reached (`available`: how many more tickets the customer may
-- have), or a promo refusal (see cinema_take_promo_use). `seat_ids` are the seats asked
-- for, or the places handed out (ascending, parallel to p_ticket_types and p_prices).
DROP FUNCTION cinema_create_booking(
    text, bigint, bigint, bigint, text, double precision, text, text, bigint[], text[],
    bigint[], bigint, bigint, bigint, bigint);
CREATE FUNCTION cinema_create_booking(
    p_reference text, p_user_id bigint, p_screening_id bigint, p_amount bigint,
    p_currency text, p_hold_seconds double precision, p_hold_token text,
    p_idempotency_key text, p_seat_ids bigint[], p_ticket_types text[], p_prices bigint[],
    p_subtotal bigint, p_discount bigint, p_fees bigint, p_promo_code_id bigint,
    p_places_hall_id bigint DEFAULT NULL, p_quantity integer DEFAULT 0,
    p_customer_limit integer DEFAULT NULL,
    OUT booking bookings, OUT taken bigint[], OUT refused text, OUT seat_ids bigint[],
    OUT available integer
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    held integer;
    use_id bigint;
BEGIN
    taken := '{}';
    seat_ids := '{}';
    -- (a)
    IF p_customer_limit IS NOT NULL THEN
        held := cinema_customer_tickets(p_user_id, p_screening_id);
        IF held + greatest(cardinality(p_seat_ids), p_quantity) > p_customer_limit THEN
            refused := 'customer_limit_reached';
            available := greatest(p_customer_limit - held, 0);
            RETURN;
        END IF;
    END IF;
    -- (b), (c)
    IF p_places_hall_id IS NULL THEN
        taken := cinema_take_seats(p_screening_id, p_seat_ids);
        IF cardinality(taken) > 0 THEN
            RETURN;
        END IF;
        seat_ids := p_seat_ids;
    ELSE
        seat_ids := cinema_take_places(p_screening_id, p_places_hall_id, p_quantity);
        IF cardinality(seat_ids) < p_quantity THEN
            refused := 'sold_out';
            available := cardinality(seat_ids);
            seat_ids := '{}';
            RETURN;
        END IF;
    END IF;
    -- (d)
    IF p_promo_code_id IS NOT NULL THEN
        SELECT u.use_id, u.refused INTO use_id, refused
          FROM cinema_take_promo_use(p_promo_code_id, p_user_id) u;
        IF refused IS NOT NULL THEN
            seat_ids := '{}';
            RETURN;
        END IF;
    END IF;
    INSERT INTO bookings (reference, user_id, screening_id, amount, currency, expires_at,
                          hold_token, idempotency_key, subtotal_minor, discount_minor,
                          fees_minor, promo_code_id)
    VALUES (p_reference, p_user_id, p_screening_id, p_amount, p_currency,
            now() + make_interval(secs => p_hold_seconds), p_hold_token, p_idempotency_key,
            p_subtotal, p_discount, p_fees, p_promo_code_id)
    RETURNING * INTO booking;
    INSERT INTO reservations (booking_id, screening_id, seat_id, status, expires_at,
                              ticket_type, price_minor)
    SELECT booking.id, p_screening_id, t.seat_id, 'PENDING', booking.expires_at,
           t.ticket_type, t.price
    FROM unnest(seat_ids, p_ticket_types, p_prices) AS t (seat_id, ticket_type, price);
    IF use_id IS NOT NULL THEN
        UPDATE promo_code_uses SET booking_id = booking.id, user_id = p_user_id
         WHERE id = use_id;
    END IF;
END
$$;
