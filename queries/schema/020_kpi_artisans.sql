-- KPI data: the marketplace's artisans (sellers).
-- Re-imports replace rows with the same natural key (ORDER BY) instead of adding to them:
-- ReplacingMergeTree keeps the row with the latest ingested_at; queries read KPI tables with FINAL.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}.
CREATE TABLE IF NOT EXISTS {{DB}}.kpi_artisans {{ON_CLUSTER}}
(
    artisan_id  String,
    joined      Date,
    category    LowCardinality(String),
    country     LowCardinality(String),                      -- ISO 3166-1 alpha-2
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {{ENGINE:ReplacingMergeTree(ingested_at)}}
ORDER BY artisan_id;
