-- Refunds in the audit log (issue 13, items 3 and 6; after db/013_refunds.sql): a refund
-- recorded, each ticket it gives back, the provider's answer, and the booking's refunded
-- total, all by triggers in the refunding transaction, with the actor of db/014_b.

-- A booking's record also shows how much of it has been refunded.
CREATE OR REPLACE FUNCTION cinema_booking_state(b bookings) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'status', b.status, 'payment_status', b.payment_status,
        'cancel_reason', b.cancel_reason, 'amount_minor', b.amount, 'currency', b.currency,
        'refund_id', b.refund_id, 'user_id', b.user_id, 'refunded_minor', b.refunded_minor)
$$;

-- A partial refund changes neither status nor payment status (already refund_pending):
-- its refunded total is a change of its own.
CREATE OR REPLACE FUNCTION cinema_audit_booking() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    action text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        action := 'booking.created';
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        action := 'booking.' || lower(NEW.status::text);
    ELSIF NEW.payment_status IS DISTINCT FROM OLD.payment_status THEN
        action := 'booking.payment_' || coalesce(NEW.payment_status, 'none');
    ELSE
        action := 'booking.refunded_total';
    END IF;
    PERFORM cinema_audit_write(
        action, 'bookings', NEW.id, NEW.id, NEW.screening_id,
        CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE cinema_booking_state(OLD) END,
        cinema_booking_state(NEW));
    RETURN NULL;
END
$$;
DROP TRIGGER bookings_audit_update ON bookings;
CREATE TRIGGER bookings_audit_update AFTER UPDATE OF status, payment_status, refunded_minor
    ON bookings
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.payment_status IS DISTINCT FROM NEW.payment_status
          OR OLD.refunded_minor IS DISTINCT FROM NEW.refunded_minor)
    EXECUTE FUNCTION cinema_audit_booking();

CREATE FUNCTION cinema_refund_state(r refunds) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'amount_minor', r.amount_minor, 'currency', r.currency, 'reason', r.reason,
        'source', r.source, 'status', r.status, 'provider_refund_id', r.provider_refund_id,
        'requested_by', r.requested_by)
$$;

CREATE FUNCTION cinema_audit_refund() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cinema_audit_write(
        CASE WHEN TG_OP = 'INSERT' THEN 'refund.created' ELSE 'refund.' || NEW.status END,
        'refunds', NEW.id, NEW.booking_id,
        (SELECT screening_id FROM bookings WHERE id = NEW.booking_id),
        CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE cinema_refund_state(OLD) END,
        cinema_refund_state(NEW));
    RETURN NULL;
END
$$;
CREATE TRIGGER refunds_audit_insert AFTER INSERT ON refunds
    FOR EACH ROW EXECUTE FUNCTION cinema_audit_refund();
CREATE TRIGGER refunds_audit_status AFTER UPDATE OF status ON refunds
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION cinema_audit_refund();

CREATE FUNCTION cinema_audit_refund_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cinema_audit_write(
        'ticket.refunded', 'reservations', NEW.reservation_id, b.id, b.screening_id, NULL,
        jsonb_build_object('refund_id', NEW.refund_id, 'seat_id', NEW.seat_id,
                           'amount_minor', NEW.amount_minor))
      FROM refunds r JOIN bookings b ON b.id = r.booking_id WHERE r.id = NEW.refund_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER refund_items_audit AFTER INSERT ON refund_items
    FOR EACH ROW EXECUTE FUNCTION cinema_audit_refund_item();
