-- Ticket types, fees and ticket lines (issue 12). Amounts stay integer ISO 4217 minor units.

-- What a screening sells: NULL ticket_types is the one default type "adult" at the category
-- prices; NULL fees is no fees. Both are written once, when the screening is created.
ALTER TABLE screenings
    ADD COLUMN ticket_types jsonb,
    ADD COLUMN fees         jsonb;

-- One reservation is one ticket: its type and the unit price the booking computed for it.
ALTER TABLE reservations
    ADD COLUMN ticket_type text NOT NULL DEFAULT 'adult',
    ADD COLUMN price_minor bigint CHECK (price_minor >= 0);
-- Written by every booking since; rows from before get their category price.
UPDATE reservations r SET price_minor = (sc.prices ->> s.category)::bigint
  FROM seats s, screenings sc
 WHERE s.id = r.seat_id AND sc.id = r.screening_id AND r.price_minor IS NULL;

-- The totals, as the booking computed them: amount (what is charged) = subtotal - discount
-- + fees. Existing bookings had neither discounts nor fees (NULL subtotal reads as amount).
ALTER TABLE bookings
    ADD COLUMN subtotal_minor bigint CHECK (subtotal_minor >= 0),
    ADD COLUMN discount_minor bigint NOT NULL DEFAULT 0 CHECK (discount_minor >= 0),
    ADD COLUMN fees_minor     bigint NOT NULL DEFAULT 0 CHECK (fees_minor >= 0);
UPDATE bookings SET subtotal_minor = amount WHERE subtotal_minor IS NULL;

-- The one booking entry point gains the ticket lines and the totals: replaced, not
-- overloaded, so there stays exactly one (docs/concurrency.md A.1).
DROP FUNCTION cinema_create_booking(
    text, bigint, bigint, bigint, text, double precision, text, text, bigint[]);

-- A new PENDING booking and one reservation per ticket, or nothing and the seats that are
-- taken. p_seat_ids, p_ticket_types and p_prices are parallel arrays (one entry per ticket).
-- Still behind reservations_live_seat_uidx: if the rules were ever wrong, the insert raises
-- unique_violation (constraint name and detail intact) and the statement writes nothing.
CREATE FUNCTION cinema_create_booking(
    p_reference text, p_user_id bigint, p_screening_id bigint, p_amount bigint,
    p_currency text, p_hold_seconds double precision, p_hold_token text,
    p_idempotency_key text, p_seat_ids bigint[], p_ticket_types text[], p_prices bigint[],
    p_subtotal bigint, p_discount bigint, p_fees bigint,
    OUT booking bookings, OUT taken bigint[]
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    taken := cinema_take_seats(p_screening_id, p_seat_ids);
    IF cardinality(taken) > 0 THEN
        RETURN;
    END IF;
    INSERT INTO bookings (reference, user_id, screening_id, amount, currency, expires_at,
                          hold_token, idempotency_key, subtotal_minor, discount_minor,
                          fees_minor)
    VALUES (p_reference, p_user_id, p_screening_id, p_amount, p_currency,
            now() + make_interval(secs => p_hold_seconds), p_hold_token, p_idempotency_key,
            p_subtotal, p_discount, p_fees)
    RETURNING * INTO booking;
    INSERT INTO reservations (booking_id, screening_id, seat_id, status, expires_at,
                              ticket_type, price_minor)
    SELECT booking.id, p_screening_id, t.seat_id, 'PENDING', booking.expires_at,
           t.ticket_type, t.price
    FROM unnest(p_seat_ids, p_ticket_types, p_prices) AS t (seat_id, ticket_type, price);
END
$$;
