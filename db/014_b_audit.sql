-- The audit log (issue 13, item 6): who did what, when, from where, before and after.
--
-- Written by triggers, in the same transaction as the change they record, so a change
-- without its record cannot exist: every booking state change (status, payment status),
-- every check-in, every role change and account creation, every catalogue and promo-code
-- write. Who did it comes from the transaction-local setting `cinema.audit` (a JSON object:
-- actor_id, role, request_id, client), which the store sets in the same transaction
-- (cinema/store/audit.py); unset, the change is the system's (the worker, a tool).
-- Append-only: UPDATE, DELETE and TRUNCATE raise, whoever asks (tests/test_audit.py).

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),  -- the changing transaction's time
    actor_id     bigint,          -- users.id; NULL: the system (worker, payment provider)
    actor_role   text NOT NULL,   -- customer, box_office, admin, anonymous, payment_provider, system
    action       text NOT NULL,   -- e.g. booking.created, booking.confirmed, ticket.checked_in
    booking_id   bigint,          -- no foreign keys: a record never blocks or follows a row
    screening_id bigint,
    target       text NOT NULL,   -- the table changed
    target_id    bigint,
    request_id   text,
    client_addr  text,
    before       jsonb,
    after        jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_booking_idx ON audit_log (booking_id, at DESC, id DESC)
    WHERE booking_id IS NOT NULL;
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, at DESC, id DESC)
    WHERE actor_id IS NOT NULL;

CREATE FUNCTION cinema_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION cinema_audit_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION cinema_audit_refuse();
-- Where the application's role is not the tables' owner, privileges say it twice.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

-- Sets who is acting for the rest of the current transaction (is_local: it never outlives
-- it, so a pooled connection carries nothing to its next user). Returns true.
CREATE FUNCTION cinema_audit_as(p_context jsonb) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('cinema.audit', coalesce(p_context, '{}'::jsonb)::text, true);
    RETURN true;
END
$$;

-- For a one-statement write: `cinema_audited($n, context)` is $n, and sets the context
-- first (a function's arguments are evaluated before it runs, so before any trigger).
CREATE FUNCTION cinema_audited(p_value anyelement, p_context jsonb)
RETURNS anyelement LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM cinema_audit_as(p_context);
    RETURN p_value;
END
$$;

-- The one writer of audit rows (the triggers below, and the store for an action that
-- changes no audited row): the actor from the transaction's context.
CREATE FUNCTION cinema_audit_write(
    p_action text, p_target text, p_target_id bigint, p_booking_id bigint,
    p_screening_id bigint, p_before jsonb, p_after jsonb
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    ctx jsonb := coalesce(nullif(current_setting('cinema.audit', true), '')::jsonb, '{}');
BEGIN
    INSERT INTO audit_log (actor_id, actor_role, action, booking_id, screening_id, target,
                           target_id, request_id, client_addr, before, after)
    VALUES ((ctx ->> 'actor_id')::bigint, coalesce(ctx ->> 'role', 'system'), p_action,
            p_booking_id, p_screening_id, p_target, p_target_id, ctx ->> 'request_id',
            ctx ->> 'client', p_before, p_after);
END
$$;

-- What a booking's record shows of it (no hold token, no client secret).
CREATE FUNCTION cinema_booking_state(b bookings) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'status', b.status, 'payment_status', b.payment_status,
        'cancel_reason', b.cancel_reason, 'amount_minor', b.amount, 'currency', b.currency,
        'refund_id', b.refund_id, 'user_id', b.user_id)
$$;

CREATE FUNCTION cinema_audit_booking() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    action text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        action := 'booking.created';
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        action := 'booking.' || lower(NEW.status::text);
    ELSE
        action := 'booking.payment_' || coalesce(NEW.payment_status, 'none');
    END IF;
    PERFORM cinema_audit_write(
        action, 'bookings', NEW.id, NEW.id, NEW.screening_id,
        CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE cinema_booking_state(OLD) END,
        cinema_booking_state(NEW));
    RETURN NULL;
END
$$;
CREATE TRIGGER bookings_audit_insert AFTER INSERT ON bookings
    FOR EACH ROW EXECUTE FUNCTION cinema_audit_booking();
CREATE TRIGGER bookings_audit_update AFTER UPDATE OF status, payment_status ON bookings
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.payment_status IS DISTINCT FROM NEW.payment_status)
    EXECUTE FUNCTION cinema_audit_booking();

CREATE FUNCTION cinema_audit_check_in() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cinema_audit_write(
        'ticket.checked_in', 'reservations', NEW.id, NEW.booking_id, NEW.screening_id,
        jsonb_build_object('checked_in_at', OLD.checked_in_at),
        jsonb_build_object('checked_in_at', NEW.checked_in_at,
                           'checked_in_by', NEW.checked_in_by, 'seat_id', NEW.seat_id,
                           'ticket_type', NEW.ticket_type));
    RETURN NULL;
END
$$;
CREATE TRIGGER reservations_audit_check_in AFTER UPDATE OF checked_in_at ON reservations
    FOR EACH ROW WHEN (OLD.checked_in_at IS DISTINCT FROM NEW.checked_in_at)
    EXECUTE FUNCTION cinema_audit_check_in();

-- Accounts: creation (with its role) and role changes; never the password hash.
CREATE FUNCTION cinema_audit_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cinema_audit_write(
        CASE WHEN TG_OP = 'INSERT' THEN 'user.created' ELSE 'user.role_changed' END,
        'users', NEW.id, NULL, NULL,
        CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE jsonb_build_object('role', OLD.role) END,
        jsonb_build_object('id', NEW.id, 'email', NEW.email, 'role', NEW.role));
    RETURN NULL;
END
$$;
CREATE TRIGGER users_audit_insert AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION cinema_audit_user();
CREATE TRIGGER users_audit_role AFTER UPDATE OF role ON users
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role)
    EXECUTE FUNCTION cinema_audit_user();

-- Catalogue and promo codes: every row written, whole. TG_ARGV[0] names the thing.
CREATE FUNCTION cinema_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) END;
    row_id bigint := coalesce(new_row, old_row) ->> 'id';
BEGIN
    PERFORM cinema_audit_write(
        TG_ARGV[0] || '.' || CASE TG_OP WHEN 'INSERT' THEN 'created'
                                        WHEN 'UPDATE' THEN 'updated' ELSE 'deleted' END,
        TG_TABLE_NAME, row_id, NULL,
        CASE WHEN TG_TABLE_NAME = 'screenings' THEN row_id END,
        old_row, new_row);
    RETURN NULL;
END
$$;
CREATE TRIGGER movies_audit AFTER INSERT OR UPDATE OR DELETE ON movies
    FOR EACH ROW EXECUTE FUNCTION cinema_audit_row('movie');
CREATE TRIGGER halls_audit AFTER INSERT OR UPDATE OR DELETE ON halls
    FOR EACH ROW EXECUTE FUNCTION cinema_audit_row('hall');
CREATE TRIGGER screenings_audit AFTER INSERT OR UPDATE OR DELETE ON screenings
    FOR EACH ROW EXECUTE FUNCTION cinema_audit_row('screening');
CREATE TRIGGER promo_codes_audit AFTER INSERT OR UPDATE OR DELETE ON promo_codes
    FOR EACH ROW EXECUTE FUNCTION cinema_audit_row('promo_code');
