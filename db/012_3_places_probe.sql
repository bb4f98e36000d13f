-- cinema_take_places (db/012_2_places_scan.sql) again, same signature and rules, with a
-- plan that no stale statistics can turn quadratic; and db/012_1's in-flight count without
-- a join.
--
-- 012_2's scan (like 008's) asked "is this place held?" with NOT EXISTS, an anti-join the
-- planner builds however the statistics suggest. In a database whose reservations were
-- never analyzed (autovacuum off, as on the shared development server, or a fresh sale) the
-- cached PL/pgSQL plan was a nested loop over a Materialize of every live reservation of
-- the screening: O(places scanned x places held), 1.5 s for one call at 5,000 held; the
-- 5,000-place benchmark's first arm ran 76 s with a p99 of 30.5 s and four 503s (statement
-- timeout), its second arm (new connections, new plans) 9 s.
--
-- Now the question is a correlated scalar subquery on both key columns of
-- reservations_live_seat_uidx: PostgreSQL runs it once per place as an index probe (it
-- never turns a scalar subquery into a join), whatever the statistics say. And the scan has
-- no ORDER BY: with one, an estimate of "few rows" let the planner probe every place above
-- the start, sort, then take the first few (O(capacity) probes per booking); without one
-- every plan (index, bitmap or sequential) stops at the LIMIT. Places are still handed out
-- in id order in practice (their rows are written once, in id order, and never updated, so
-- every plan meets them in that order), and nothing depends on it: SKIP LOCKED needs no
-- lock order, and the result is sorted. The rules are unchanged: the first pass after the
-- highest place held live, then from the first place (012_2); SKIP LOCKED (never waits);
-- the re-read after the locks (A.4); lapsed holds ended (A.3.5).

CREATE OR REPLACE FUNCTION cinema_take_places(
    p_screening_id bigint, p_hall_id bigint, p_quantity integer
) RETURNS bigint[] LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    mine bigint[] := '{}';
    tried bigint[] := '{}';
    locked bigint[];
    lapsed bigint[];
    after_id bigint;
BEGIN
    -- 0. Where the first pass starts: after the highest place held live (0: none is).
    SELECT coalesce(max(r.seat_id), 0) INTO after_id FROM reservations r
     WHERE r.screening_id = p_screening_id AND r.status <> 'CANCELLED';
    LOOP
        -- 1. Lock places that looked free (or lapsed) at this statement's snapshot. Our own
        --    earlier rounds' rows are excluded by hand: SKIP LOCKED does not skip our locks.
        SELECT coalesce(array_agg(c.id), '{}') INTO locked
          FROM (SELECT s.id FROM seats s
                 WHERE s.hall_id = p_hall_id AND s.id > after_id AND s.id <> ALL (tried)
                   AND (SELECT count(*) FROM reservations r
                         WHERE r.screening_id = p_screening_id AND r.seat_id = s.id
                           AND r.status <> 'CANCELLED'
                           AND NOT (r.status = 'PENDING' AND r.expires_at <= now())) = 0
                 LIMIT p_quantity - cardinality(mine)
                 FOR UPDATE OF s SKIP LOCKED) c;
        IF cardinality(locked) = 0 THEN
            -- Nothing more above the start: the second pass, from the first place.
            EXIT WHEN after_id = 0;
            after_id := 0;
            CONTINUE;
        END IF;
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
             WHERE (SELECT count(*) FROM reservations r
                     WHERE r.screening_id = p_screening_id AND r.seat_id = u
                       AND r.status <> 'CANCELLED') = 0
             ORDER BY u);
        EXIT WHEN cardinality(mine) >= p_quantity;
    END LOOP;
    RETURN ARRAY(SELECT unnest(mine) ORDER BY 1);
END
$$;

-- db/012_1's count, without a join for the planner to get wrong: the free places are the
-- hall's places less the live, unlapsed reservations of the screening (at most one per
-- place: reservations_live_seat_uidx), less the caller's own.
CREATE OR REPLACE FUNCTION cinema_places_in_flight(
    p_screening_id bigint, p_hall_id bigint, p_mine bigint[]
) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT greatest(
        (SELECT count(*) FROM seats s WHERE s.hall_id = p_hall_id)
        - (SELECT count(*) FROM reservations r
            WHERE r.screening_id = p_screening_id AND r.status <> 'CANCELLED'
              AND NOT (r.status = 'PENDING' AND r.expires_at <= now()))
        - cardinality(p_mine),
        0)::integer
$$;
