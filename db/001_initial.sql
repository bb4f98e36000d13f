-- CinemaCore initial schema.
-- Money is stored as integer minor units (cents); times as timestamptz.

CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    is_staff      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_uidx ON users (lower(email));

CREATE TABLE movies (
    id               bigserial PRIMARY KEY,
    title            text NOT NULL,
    description      text NOT NULL DEFAULT '',
    duration_minutes integer NOT NULL CHECK (duration_minutes > 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX movies_title_idx ON movies (title, id);

CREATE TABLE halls (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    layout     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE seats (
    id        bigserial PRIMARY KEY,
    hall_id   bigint NOT NULL REFERENCES halls (id),
    row_label text NOT NULL,
    row_index integer NOT NULL,
    number    integer NOT NULL,
    position  integer NOT NULL,
    category  text NOT NULL,
    CONSTRAINT seats_hall_row_number_key UNIQUE (hall_id, row_label, number)
);
CREATE INDEX seats_hall_order_idx ON seats (hall_id, row_index, number);

CREATE TABLE screenings (
    id         bigserial PRIMARY KEY,
    movie_id   bigint NOT NULL REFERENCES movies (id),
    hall_id    bigint NOT NULL REFERENCES halls (id),
    starts_at  timestamptz NOT NULL,
    prices     jsonb NOT NULL,          -- {"standard": 1250, ...} in minor units
    currency   char(3) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX screenings_starts_at_idx ON screenings (starts_at, id);
CREATE INDEX screenings_movie_starts_at_idx ON screenings (movie_id, starts_at, id);

CREATE TYPE booking_status AS ENUM ('PENDING', 'CONFIRMED', 'CANCELLED');

CREATE TABLE bookings (
    id              bigserial PRIMARY KEY,
    reference       char(8) NOT NULL,
    user_id         bigint NOT NULL REFERENCES users (id),
    screening_id    bigint NOT NULL REFERENCES screenings (id),
    status          booking_status NOT NULL DEFAULT 'PENDING',
    amount          bigint NOT NULL CHECK (amount >= 0),   -- minor units
    currency        char(3) NOT NULL,
    expires_at      timestamptz NOT NULL,
    hold_token      text NOT NULL,
    idempotency_key text,
    cancel_reason   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX bookings_reference_uidx ON bookings (reference);
CREATE UNIQUE INDEX bookings_user_idempotency_uidx ON bookings (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX bookings_user_created_idx ON bookings (user_id, created_at DESC, id DESC);
-- Finds overdue holds for the expiry reconciler.
CREATE INDEX bookings_status_expires_idx ON bookings (status, expires_at);

CREATE TABLE reservations (
    id           bigserial PRIMARY KEY,
    booking_id   bigint NOT NULL REFERENCES bookings (id),
    screening_id bigint NOT NULL REFERENCES screenings (id),
    seat_id      bigint NOT NULL REFERENCES seats (id),
    status       booking_status NOT NULL DEFAULT 'PENDING',
    expires_at   timestamptz NOT NULL
);
-- The final authority: a seat of a screening has at most one live reservation.
CREATE UNIQUE INDEX reservations_live_seat_uidx ON reservations (screening_id, seat_id)
    WHERE status <> 'CANCELLED';
CREATE INDEX reservations_booking_idx ON reservations (booking_id);
