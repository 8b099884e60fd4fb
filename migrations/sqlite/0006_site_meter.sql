-- Where a site's meter is: 'store' (the store's own load) or 'incomer' (the grid connection, the
-- cars included; the balancer takes the cars' own readings off). In step with ../postgres/0006_site_meter.sql.
ALTER TABLE sites ADD COLUMN site_meter TEXT NOT NULL DEFAULT 'store' CHECK (site_meter IN ('store', 'incomer'));
