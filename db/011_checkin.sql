-- Check-in at the door (issue 13): each reservation row is one ticket. A ticket's code is
-- signed, not stored (cinema/boxoffice/codes.py), so rows written by any path get one.
-- checked_in_at is set once, by a compare-and-set UPDATE (docs/concurrency.md).
ALTER TABLE reservations
    ADD COLUMN checked_in_at timestamptz,
    ADD COLUMN checked_in_by bigint REFERENCES users (id) ON DELETE SET NULL;

-- The box office's booking lookup by screening, newest first.
CREATE INDEX bookings_screening_created_idx ON bookings (screening_id, created_at DESC, id DESC);
