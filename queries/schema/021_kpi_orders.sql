-- KPI data: completed orders.  Natural key: order_id (re-imports replace, see 020).
-- amount is in the order's currency; KPI queries that add amounts take a currency filter.
-- channel: organic, paid_ads, email, influencer, ... ; promo_code '' when none.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}.
CREATE TABLE IF NOT EXISTS {{DB}}.kpi_orders {{ON_CLUSTER}}
(
    order_id    String,
    buyer_id    String,
    artisan_id  String,
    amount      Decimal(18, 2),
    currency    LowCardinality(String),
    ts          DateTime64(3, 'UTC'),
    channel     LowCardinality(String),
    promo_code  String DEFAULT '',
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_artisan artisan_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = {{ENGINE:ReplacingMergeTree(ingested_at)}}
ORDER BY order_id;
