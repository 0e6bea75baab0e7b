-- KPI data (optional): loyalty-programme members.  Natural key: buyer_id (re-imports replace, see 020).
-- last_active: the member's last earn or redeem, NULL when never.  Engagement = members active in a
-- window ÷ members enrolled by its end; with no rows the scorecard reports loyalty as n/a.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}.
CREATE TABLE IF NOT EXISTS {{DB}}.kpi_loyalty {{ON_CLUSTER}}
(
    buyer_id    String,
    enrolled    DateTime64(3, 'UTC'),
    last_active Nullable(DateTime64(3, 'UTC')),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {{ENGINE:ReplacingMergeTree(ingested_at)}}
ORDER BY buyer_id;
