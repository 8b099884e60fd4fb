-- Load balancing: what the balancer needs to know about a site's electrics. In step with ../postgres/0003_balancer.sql.

-- The store load assumed per phase when the site meter is stale or missing (tenths of an amp).
ALTER TABLE sites ADD COLUMN store_worst_case_da BIGINT NOT NULL DEFAULT 0 CHECK (store_worst_case_da >= 0);
-- What a connector may draw with no profile of ours in force (the TxDefaultProfile we install), tenths of an amp.
ALTER TABLE sites ADD COLUMN connector_fallback_da BIGINT NOT NULL DEFAULT 0 CHECK (connector_fallback_da >= 0);

-- Feeders and breakers below the grid connection, nested through parent_id.
CREATE TABLE circuits (
    id           INTEGER PRIMARY KEY,
    site_id      BIGINT  NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    parent_id    BIGINT  REFERENCES circuits (id),
    name         TEXT    NOT NULL,
    limit_l1_da  BIGINT  NOT NULL CHECK (limit_l1_da > 0),
    limit_l2_da  BIGINT  NOT NULL CHECK (limit_l2_da > 0),
    limit_l3_da  BIGINT  NOT NULL CHECK (limit_l3_da > 0)
);

ALTER TABLE connectors ADD COLUMN circuit_id BIGINT REFERENCES circuits (id);
-- Which site phase the connector's L1, L2, L3 are wired to.
ALTER TABLE connectors ADD COLUMN rotation TEXT NOT NULL DEFAULT 'L1L2L3'
    CHECK (rotation IN ('L1L2L3', 'L2L3L1', 'L3L1L2', 'L1L3L2', 'L3L2L1', 'L2L1L3'));
