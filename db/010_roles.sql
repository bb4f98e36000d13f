-- Staff roles (issue 13): customer, box_office (booking lookup, check-in, refunds), admin
-- (everything). The role is the authority; is_staff stays as the old flag, kept equal to
-- role = 'admin' by a trigger so tools that still write it (bench/accounts.py) keep working.
ALTER TABLE users
    ADD COLUMN role text NOT NULL DEFAULT 'customer'
        CHECK (role IN ('customer', 'box_office', 'admin'));
UPDATE users SET role = 'admin' WHERE is_staff;

CREATE OR REPLACE FUNCTION cinema_users_role_flag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An insert that only says is_staff (the old form) makes an admin.
    IF TG_OP = 'INSERT' AND NEW.is_staff AND NEW.role = 'customer' THEN
        NEW.role := 'admin';
    END IF;
    NEW.is_staff := NEW.role = 'admin';
    RETURN NEW;
END
$$;

CREATE TRIGGER users_role_flag BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION cinema_users_role_flag();
