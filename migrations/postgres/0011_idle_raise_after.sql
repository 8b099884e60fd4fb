-- How long the room for an idle connector's own default must last before it goes back up (the
-- balancer's idle_raise_after), in milliseconds: a car arriving soon after another left then sends no
-- profile to every idle connector and back. In step with ../sqlite/0011_idle_raise_after.sql.
ALTER TABLE sites ADD COLUMN idle_raise_after_ms BIGINT NOT NULL DEFAULT 120000 CHECK (idle_raise_after_ms >= 0);
