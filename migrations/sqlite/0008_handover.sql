-- Handovers scheduled ahead (the balancer's HandoverConfig): how far ahead a decrease that only frees
-- capacity for other sessions switches, and how far the site's chargers' clocks may be off ours, in
-- milliseconds. No lead: handovers are not scheduled (every decrease is in force as soon as it lands).
-- In step with ../postgres/0008_handover.sql.
ALTER TABLE sites ADD COLUMN handover_lead_ms BIGINT CHECK (handover_lead_ms > 0);
ALTER TABLE sites ADD COLUMN handover_clock_skew_ms BIGINT NOT NULL DEFAULT 0 CHECK (handover_clock_skew_ms >= 0);
