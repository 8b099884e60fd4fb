-- What the driver or an operator stated about a session, for the balancer: when the car leaves (UTC
-- milliseconds), how much energy it wants (Wh), and its priority (0 normal, up to 3). Kept with the
-- transaction so that a restart mid-session loses none of it. In step with ../sqlite/0009_session_needs.sql.
ALTER TABLE transactions ADD COLUMN departure_at_ms BIGINT;
ALTER TABLE transactions ADD COLUMN energy_need_wh BIGINT CHECK (energy_need_wh > 0);
ALTER TABLE transactions ADD COLUMN priority BIGINT NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 3);
