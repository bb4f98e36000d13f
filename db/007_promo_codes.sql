-- Promo codes (issue 12): a code allows max_uses uses, counted atomically in the booking
-- transaction. No hot counter row: each use is a pre-created row of promo_code_uses, and a
-- booking claims a free one FOR UPDATE SKIP LOCKED (docs/concurrency.md A.3 (d)), so
-- buyers of the same code never queue behind each other and taking a use never waits.

CREATE TABLE promo_codes (
    id                    bigserial PRIMARY KEY,
    code                  text NOT NULL CHECK (code = upper(code)),
    kind                  text NOT NULL CHECK (kind IN ('percent', 'fixed')),
    value                 numeric(12, 3) NOT NULL CHECK (value > 0),
    max_uses              integer NOT NULL CHECK (max_uses BETWEEN 1 AND 100000),
    max_uses_per_customer integer CHECK (max_uses_per_customer >= 1),
    valid_from            timestamptz,
    valid_until           timestamptz,
    screening_ids         bigint[],
    ticket_types          text[],
    active                boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'percent' OR value <= 100),
    CHECK (valid_until IS NULL OR valid_from IS NULL OR valid_until > valid_from)
);
CREATE UNIQUE INDEX promo_codes_code_uidx ON promo_codes (code);

-- One row per use the code allows. booking_id is the booking holding the use (NULL: free);
-- user_id its customer, for max_uses_per_customer.
CREATE TABLE promo_code_uses (
    id            bigserial PRIMARY KEY,
    promo_code_id bigint NOT NULL REFERENCES promo_codes (id),
    booking_id    bigint REFERENCES bookings (id),
    user_id       bigint
);
CREATE INDEX promo_code_uses_free_idx ON promo_code_uses (promo_code_id, id)
    WHERE booking_id IS NULL;
CREATE INDEX promo_code_uses_customer_idx ON promo_code_uses (promo_code_id, user_id)
    WHERE booking_id IS NOT NULL;
-- The last word: a booking holds at most one use.
CREATE UNIQUE INDEX promo_code_uses_booking_uidx ON promo_code_uses (booking_id)
    WHERE booking_id IS NOT NULL;

ALTER TABLE bookings ADD COLUMN promo_code_id bigint REFERENCES promo_codes (id);

-- A booking that ends (cancelled, expired, payment failed: whichever statement ends it) gives
-- its use back in the same transaction. Its use row is touched by nobody else: takers only
-- lock rows whose booking_id IS NULL.
CREATE FUNCTION cinema_give_back_promo_use() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE promo_code_uses SET booking_id = NULL, user_id = NULL WHERE booking_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER bookings_give_back_promo_use
    AFTER UPDATE OF status ON bookings
    FOR EACH ROW
    WHEN (NEW.status = 'CANCELLED' AND OLD.status <> 'CANCELLED'
          AND NEW.promo_code_id IS NOT NULL)
    EXECUTE FUNCTION cinema_give_back_promo_use();

-- Rule A.3 (d): a free use of p_promo_id for p_user_id, locked until the caller's
-- transaction ends (the caller then writes its booking id into it), or NULL and why not:
-- promo_code_invalid (deactivated or outside its validity now), promo_code_exhausted (no
-- free use), promo_code_customer_limit (the customer holds max_uses_per_customer live uses).
-- The only wait is on the customer's own other bookings with this code (an advisory lock,
-- at most one per transaction, held by transactions that wait on nothing after it).
CREATE FUNCTION cinema_take_promo_use(
    p_promo_id bigint, p_user_id bigint, OUT use_id bigint, OUT refused text
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    promo promo_codes;
    lapsed bigint[];
BEGIN
    SELECT * INTO promo FROM promo_codes WHERE id = p_promo_id;
    IF NOT FOUND OR NOT promo.active OR now() < coalesce(promo.valid_from, '-infinity')
       OR now() >= coalesce(promo.valid_until, 'infinity') THEN
        refused := 'promo_code_invalid';
        RETURN;
    END IF;
    IF promo.max_uses_per_customer IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(
            hashtextextended('cinema_promo_customer:' || p_promo_id || ':' || p_user_id, 0));
        -- A new statement: it sees the uses committed by the lock's previous holder.
        IF (SELECT count(*) FROM promo_code_uses u JOIN bookings b ON b.id = u.booking_id
             WHERE u.promo_code_id = p_promo_id AND u.user_id = p_user_id
               AND NOT (b.status = 'PENDING' AND b.expires_at <= now()))
           >= promo.max_uses_per_customer THEN
            refused := 'promo_code_customer_limit';
            RETURN;
        END IF;
    END IF;
    FOR round IN 1..2 LOOP
        SELECT id INTO use_id FROM promo_code_uses
         WHERE promo_code_id = p_promo_id AND booking_id IS NULL
         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF use_id IS NOT NULL THEN
            RETURN;
        END IF;
        EXIT WHEN round = 2;
        -- None free: end the lapsed holds that hold uses, those nobody else is ending now
        -- (SKIP LOCKED: never waits), which gives their uses back; then look once more.
        SELECT coalesce(array_agg(l.id), '{}') INTO lapsed
          FROM (SELECT b.id FROM bookings b JOIN promo_code_uses u ON u.booking_id = b.id
                 WHERE u.promo_code_id = p_promo_id
                   AND b.status = 'PENDING' AND b.expires_at <= now()
                 ORDER BY b.id LIMIT 20
                 FOR UPDATE OF b SKIP LOCKED) l;
        EXIT WHEN cardinality(lapsed) = 0;
        PERFORM cinema_end_bookings(lapsed, 'CANCELLED', 'expired', false);
    END LOOP;
    refused := 'promo_code_exhausted';
END
$$;

-- The one booking entry point gains the promo code: replaced, not overloaded.
DROP FUNCTION cinema_create_booking(
    text, bigint, bigint, bigint, text, double precision, text, text, bigint[], text[],
    bigint[], bigint, bigint, bigint);

-- A new PENDING booking and one reservation per ticket, or nothing and why not: `taken`
-- lists seats someone else holds, or `refused` names a promo refusal (see
-- cinema_take_promo_use). Lock order (docs/concurrency.md A.3): seats, lapsed holds on
-- them, then the promo use. p_seat_ids, p_ticket_types and p_prices are parallel arrays.
CREATE FUNCTION cinema_create_booking(
    p_reference text, p_user_id bigint, p_screening_id bigint, p_amount bigint,
    p_currency text, p_hold_seconds double precision, p_hold_token text,
    p_idempotency_key text, p_seat_ids bigint[], p_ticket_types text[], p_prices bigint[],
    p_subtotal bigint, p_discount bigint, p_fees bigint, p_promo_code_id bigint,
    OUT booking bookings, OUT taken bigint[], OUT refused text
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    use_id bigint;
BEGIN
    taken := cinema_take_seats(p_screening_id, p_seat_ids);
    IF cardinality(taken) > 0 THEN
        RETURN;
    END IF;
    IF p_promo_code_id IS NOT NULL THEN
        SELECT u.use_id, u.refused INTO use_id, refused
          FROM cinema_take_promo_use(p_promo_code_id, p_user_id) u;
        IF refused IS NOT NULL THEN
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
    FROM unnest(p_seat_ids, p_ticket_types, p_prices) AS t (seat_id, ticket_type, price);
    IF use_id IS NOT NULL THEN
        UPDATE promo_code_uses SET booking_id = booking.id, user_id = p_user_id
         WHERE id = use_id;
    END IF;
END
$$;
