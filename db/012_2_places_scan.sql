-- cinema_take_places (db/008_general_admission.sql), same signature and rules, without
-- rescanning the sold part of the screening for every booking.
--
-- 008's scan walked the places in id order from the first one, probing each for a live
-- reservation: O(places already held) per booking (at 4,000 of 5,000 held: 4,004 probes,
-- 12,058 buffers, 10.8 ms, and more for every lock it skipped). Under a sale every booking
-- paid it, and a 5,000-place benchmark ran into the 30 s statement timeout.
--
-- Now: a first pass starts after the highest place held live (one backward step of
-- reservations_live_seat_uidx). Above it places are free unless another buyer is taking
-- them right now, so the pass costs O(quantity + places being taken). Places below it come
-- free only by a cancel or a lapsed hold; when the first pass finds too few, a second pass
-- scans from the start, as 008 did, for exactly those. The rules are unchanged: SKIP
-- LOCKED (never waits), the re-read after the locks (A.4), lapsed holds ended (A.3.5).

-- Both passes walk one hall's places in id order; seats_pkey alone would filter every
-- other hall's seats with lower ids on the way.
CREATE INDEX seats_hall_id_idx ON seats (hall_id, id);

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
                   AND NOT EXISTS (
                       SELECT 1 FROM reservations r
                        WHERE r.screening_id = p_screening_id AND r.seat_id = s.id
                          AND r.status <> 'CANCELLED'
                          AND NOT (r.status = 'PENDING' AND r.expires_at <= now()))
                 ORDER BY s.id
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
             WHERE NOT EXISTS (SELECT 1 FROM reservations r
                                WHERE r.screening_id = p_screening_id AND r.seat_id = u
                                  AND r.status <> 'CANCELLED')
             ORDER BY u);
        EXIT WHEN cardinality(mine) >= p_quantity;
    END LOOP;
    RETURN ARRAY(SELECT unnest(mine) ORDER BY 1);
END
$$;
