-- General admission: a sold_out refusal tells "truly gone" from "being booked by others"
-- (docs/concurrency.md A.3.4 and "the sold-out marker").
--
-- cinema_take_places (db/008) skips place rows that other transactions hold locked. Those
-- buyers may still roll back (their promo code or customer limit refuses them later in the
-- same statement), so "the scan found 0" is not "0 places are left": written to Redis as the
-- sold-out marker it refused every buyer for the marker's window while places were free.

-- How many places of the screening nobody holds by a live reservation, besides p_mine (the
-- ones the caller locked itself): places another transaction has locked right now, or
-- freed since the caller's scan. A plain read, so it never waits for those locks. Lapsed
-- holds count as free, as they do for cinema_take_places.
CREATE OR REPLACE FUNCTION cinema_places_in_flight(
    p_screening_id bigint, p_hall_id bigint, p_mine bigint[]
) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer FROM seats s
     WHERE s.hall_id = p_hall_id AND s.id <> ALL (p_mine)
       AND NOT EXISTS (
           SELECT 1 FROM reservations r
            WHERE r.screening_id = p_screening_id AND r.seat_id = s.id
              AND r.status <> 'CANCELLED'
              AND NOT (r.status = 'PENDING' AND r.expires_at <= now()))
$$;

-- cinema_create_booking as in db/008_general_admission.sql (same parameters), plus one OUT
-- column: `in_flight`, on a sold_out refusal the places that are free but row-locked by
-- other buyers' open transactions right now (they may roll back). The caller may tell
-- Redis "sold out" (or "k left") only when in_flight = 0. Everything else is unchanged.
DROP FUNCTION cinema_create_booking(
    text, bigint, bigint, bigint, text, double precision, text, text, bigint[], text[],
    bigint[], bigint, bigint, bigint, bigint, bigint, integer, integer);
CREATE FUNCTION cinema_create_booking(
    p_reference text, p_user_id bigint, p_screening_id bigint, p_amount bigint,
    p_currency text, p_hold_seconds double precision, p_hold_token text,
    p_idempotency_key text, p_seat_ids bigint[], p_ticket_types text[], p_prices bigint[],
    p_subtotal bigint, p_discount bigint, p_fees bigint, p_promo_code_id bigint,
    p_places_hall_id bigint DEFAULT NULL, p_quantity integer DEFAULT 0,
    p_customer_limit integer DEFAULT NULL,
    OUT booking bookings, OUT taken bigint[], OUT refused text, OUT seat_ids bigint[],
    OUT available integer, OUT in_flight integer
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    held integer;
    use_id bigint;
BEGIN
    taken := '{}';
    seat_ids := '{}';
    in_flight := 0;
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
            in_flight := cinema_places_in_flight(p_screening_id, p_places_hall_id, seat_ids);
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
