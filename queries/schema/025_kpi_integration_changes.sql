-- KPI data: integration changes for before/after analysis.  Natural key: change_id (re-imports replace,
-- see 020).  artisan_id '*' = the change affects every artisan served through partner_id.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}.
CREATE TABLE IF NOT EXISTS {{DB}}.kpi_integration_changes {{ON_CLUSTER}}
(
    change_id   String,
    partner_id  String,
    artisan_id  String,
    description String,
    kind        Enum8('new_integration' = 1, 'version_upgrade' = 2, 'outage_fix' = 3),
    ts          DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {{ENGINE:ReplacingMergeTree(ingested_at)}}
ORDER BY change_id;
