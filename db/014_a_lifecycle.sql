-- Show lifecycle (issue 13, item 5). After a screening ends (starts_at + the movie's
-- duration_minutes) the worker moves its CONFIRMED bookings to COMPLETED (a ticket was
-- checked in) or NO_SHOW, both terminal; after it starts, PENDING holds of it end
-- ('screening_started'), since they can no longer be paid (docs/concurrency.md C.8).
--
-- A migration runs in one transaction, and an enum value added in a transaction cannot be
-- used in it: the new names below appear only inside PL/pgSQL bodies, resolved when they run.
ALTER TYPE booking_status ADD VALUE IF NOT EXISTS 'COMPLETED';
ALTER TYPE booking_status ADD VALUE IF NOT EXISTS 'NO_SHOW';

-- Finds the CONFIRMED bookings of ended screenings. Small: a booking leaves it when its
-- screening has ended and the worker has moved it on.
CREATE INDEX bookings_confirmed_screening_idx ON bookings (screening_id, id)
    WHERE status = 'CONFIRMED';

-- Up to p_limit PENDING bookings of screenings that have started, ended as CANCELLED with
-- reason 'screening_started' (their reservations too). SKIP LOCKED: a booking being settled
-- or cancelled right now is left to the next round; never waits. Returns the ids ended.
CREATE FUNCTION cinema_end_started(p_limit integer)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    due bigint[];
BEGIN
    SELECT coalesce(array_agg(d.id ORDER BY d.id), '{}') INTO due
      FROM (SELECT b.id FROM bookings b JOIN screenings s ON s.id = b.screening_id
             WHERE b.status = 'PENDING' AND s.starts_at <= now()
             ORDER BY b.id LIMIT p_limit
             FOR UPDATE OF b SKIP LOCKED) d;
    IF cardinality(due) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT cinema_end_bookings(due, 'CANCELLED', 'screening_started', true);
END
$$;

-- Up to p_limit CONFIRMED bookings of ended screenings, moved (with their live tickets) to
-- COMPLETED if a ticket was checked in, else NO_SHOW. Idempotent (compare-and-set on
-- CONFIRMED), batched, and safe beside a check-in of the same ticket (docs/concurrency.md
-- C.8): the tickets are locked before the decision, so a check-in in flight commits first
-- and is counted, and one that comes after finds its ticket no longer CONFIRMED.
CREATE FUNCTION cinema_finish_ended(p_limit integer)
RETURNS TABLE (booking_id bigint, status booking_status) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    due bigint[];
BEGIN
    -- 1. The bookings, SKIP LOCKED (never waits: one being refunded is left for later).
    SELECT coalesce(array_agg(d.id ORDER BY d.id), '{}') INTO due
      FROM (SELECT b.id FROM bookings b
              JOIN screenings s ON s.id = b.screening_id
              JOIN movies m ON m.id = s.movie_id
             WHERE b.status = 'CONFIRMED'
               AND s.starts_at + make_interval(mins => m.duration_minutes) <= now()
             ORDER BY b.id LIMIT p_limit
             FOR UPDATE OF b SKIP LOCKED) d;
    IF cardinality(due) = 0 THEN
        RETURN;
    END IF;
    -- 2. Their live tickets, ascending id: waits for a check-in that holds one (C.7 holds
    --    that one row and waits for nothing).
    PERFORM 1 FROM reservations r
     WHERE r.booking_id = ANY (due) AND r.status = 'CONFIRMED'
     ORDER BY r.id FOR UPDATE;
    -- 3. A new statement, so a snapshot after the locks: it sees every committed check-in.
    RETURN QUERY
        WITH done AS (
            UPDATE bookings b
               SET status = CASE WHEN EXISTS (
                                     SELECT 1 FROM reservations r
                                      WHERE r.booking_id = b.id AND r.checked_in_at IS NOT NULL)
                                 THEN 'COMPLETED'::booking_status
                                 ELSE 'NO_SHOW'::booking_status END,
                   updated_at = now()
             WHERE b.id = ANY (due) AND b.status = 'CONFIRMED'
            RETURNING b.id, b.status
        ), tickets AS (
            UPDATE reservations r SET status = done.status
              FROM done
             WHERE r.booking_id = done.id AND r.status = 'CONFIRMED'
        )
        SELECT done.id, done.status FROM done ORDER BY done.id;
END
$$;
