-- KPI data: the current state of each listing.  Natural key: (artisan_id, listing_id) (re-imports
-- replace, see 020).  sync_errors: inventory-sync failures recorded for the listing since its last
-- successful sync (0 = in sync).
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}.
CREATE TABLE IF NOT EXISTS {{DB}}.kpi_listings {{ON_CLUSTER}}
(
    artisan_id  String,
    listing_id  String,
    created     DateTime64(3, 'UTC'),
    updated     DateTime64(3, 'UTC'),
    sync_errors UInt32,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {{ENGINE:ReplacingMergeTree(ingested_at)}}
ORDER BY (artisan_id, listing_id);
