-- KPI data: shopping-cart lifecycle events.  Natural key: (cart_id, event) — one row per cart and
-- lifecycle step (re-imports replace, see 020).  channel / promo_code attribute the cart to the
-- acquisition channel ('' when unknown) for the channel ROI query.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}.
CREATE TABLE IF NOT EXISTS {{DB}}.kpi_cart_events {{ON_CLUSTER}}
(
    cart_id     String,
    buyer_id    String,
    artisan_id  String,
    event       Enum8('created' = 1, 'checkout_started' = 2, 'purchased' = 3, 'abandoned' = 4),
    ts          DateTime64(3, 'UTC'),
    channel     LowCardinality(String) DEFAULT '',
    promo_code  String DEFAULT '',
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {{ENGINE:ReplacingMergeTree(ingested_at)}}
ORDER BY (cart_id, event);
