-- One way to take seats (docs/concurrency.md). Every transaction that takes seats calls
-- cinema_take_seats; a new booking is written by cinema_create_booking in one statement, so
-- the winner's commit is one round trip. All three are VOLATILE PL/pgSQL: under READ
-- COMMITTED each statement inside them takes a new snapshot, which the lock-then-look steps
-- below rely on.

-- Ends PENDING bookings and their reservations, compare-and-set on status: only PENDING
-- ones, and unless p_force only those past their deadline. Returns the ids it ended.
CREATE OR REPLACE FUNCTION cinema_end_bookings(
    p_booking_ids bigint[], p_target booking_status, p_reason text, p_force boolean
) RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- Several bookings are locked in ascending id order, like seats: two seat takers ending
    -- the same lapsed holds queue instead of deadlocking.
    PERFORM 1 FROM bookings WHERE id = ANY (p_booking_ids) ORDER BY id FOR UPDATE;
    RETURN QUERY
        WITH ended AS (
            UPDATE bookings SET status = p_target, cancel_reason = p_reason, updated_at = now()
            WHERE id = ANY (p_booking_ids) AND status = 'PENDING'
              AND (p_force OR expires_at <= now())
            RETURNING id
        ), released AS (
            UPDATE reservations SET status = p_target
            WHERE booking_id IN (SELECT id FROM ended) AND status = 'PENDING'
        )
        SELECT id FROM ended ORDER BY id;
END
$$;

-- The seats of p_seat_ids that p_screening_id cannot have, ascending; empty: they are the
-- caller's until its transaction ends. Each numbered step is its own statement.
CREATE OR REPLACE FUNCTION cinema_take_seats(p_screening_id bigint, p_seat_ids bigint[])
RETURNS bigint[] LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    locked bigint[];
    taken bigint[];
    lapsed bigint[];
BEGIN
    -- 1. Lock the seat rows in ascending id order. A seat that does not exist is taken.
    SELECT coalesce(array_agg(s.id), '{}') INTO locked
      FROM (SELECT id FROM seats WHERE id = ANY (p_seat_ids) ORDER BY id FOR UPDATE) s;
    IF cardinality(locked) < cardinality(ARRAY(SELECT DISTINCT unnest(p_seat_ids))) THEN
        RETURN ARRAY(SELECT DISTINCT u FROM unnest(p_seat_ids) u
                      WHERE u <> ALL (locked) ORDER BY u);
    END IF;

    -- 2. A new statement, so a snapshot taken after the locks were granted: it sees every
    --    reservation committed by whoever held them before us.
    SELECT coalesce(array_agg(r.seat_id ORDER BY r.seat_id) FILTER (WHERE NOT r.lapsed), '{}'),
           coalesce(array_agg(DISTINCT r.booking_id) FILTER (WHERE r.lapsed), '{}')
      INTO taken, lapsed
      FROM (SELECT seat_id, booking_id, status = 'PENDING' AND expires_at <= now() AS lapsed
              FROM reservations
             WHERE screening_id = p_screening_id AND seat_id = ANY (p_seat_ids)
               AND status <> 'CANCELLED') r;
    IF cardinality(taken) > 0 OR cardinality(lapsed) = 0 THEN
        RETURN taken;
    END IF;

    -- 3. End the holds past their deadline (their booking rows locked in id order).
    PERFORM cinema_end_bookings(lapsed, 'CANCELLED', 'expired', false);

    -- 4. Look again: a lapsed hold may have been paid (or ended by someone else) while we
    --    waited for its booking row.
    RETURN ARRAY(SELECT seat_id FROM reservations
                  WHERE screening_id = p_screening_id AND seat_id = ANY (p_seat_ids)
                    AND status <> 'CANCELLED'
                  ORDER BY seat_id);
END
$$;

-- A new PENDING booking and one reservation per seat, or nothing and the seats that are taken.
-- Still behind reservations_live_seat_uidx: if the rules above were ever wrong, the insert
-- raises unique_violation (constraint name and detail intact) and the statement writes nothing.
CREATE OR REPLACE FUNCTION cinema_create_booking(
    p_reference text, p_user_id bigint, p_screening_id bigint, p_amount bigint,
    p_currency text, p_hold_seconds double precision, p_hold_token text,
    p_idempotency_key text, p_seat_ids bigint[],
    OUT booking bookings, OUT taken bigint[]
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    taken := cinema_take_seats(p_screening_id, p_seat_ids);
    IF cardinality(taken) > 0 THEN
        RETURN;
    END IF;
    INSERT INTO bookings (reference, user_id, screening_id, amount, currency, expires_at,
                          hold_token, idempotency_key)
    VALUES (p_reference, p_user_id, p_screening_id, p_amount, p_currency,
            now() + make_interval(secs => p_hold_seconds), p_hold_token, p_idempotency_key)
    RETURNING * INTO booking;
    INSERT INTO reservations (booking_id, screening_id, seat_id, status, expires_at)
    SELECT booking.id, p_screening_id, seat_id, 'PENDING', booking.expires_at
    FROM unnest(p_seat_ids) AS seat_id;
END
$$;
