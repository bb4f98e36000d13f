-- The show lifecycle leaves cancelled screenings alone (after db/013_refunds.sql): their
-- bookings are the screening cancellation's to refund (docs/concurrency.md C.12), and a
-- booking moved to COMPLETED or NO_SHOW first could no longer be refunded. Otherwise as
-- db/014_a_lifecycle.sql.

CREATE OR REPLACE FUNCTION cinema_finish_ended(p_limit integer)
RETURNS TABLE (booking_id bigint, status booking_status) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    due bigint[];
BEGIN
    -- 1. The bookings, SKIP LOCKED (never waits: one being refunded is left for later).
    SELECT coalesce(array_agg(d.id ORDER BY d.id), '{}') INTO due
      FROM (SELECT b.id FROM bookings b
              JOIN screenings s ON s.id = b.screening_id
              JOIN movies m ON m.id = s.movie_id
             WHERE b.status = 'CONFIRMED' AND s.cancelled_at IS NULL
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
