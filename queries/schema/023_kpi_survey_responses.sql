-- KPI data: one row per survey delivered to a buyer.  Natural key: survey_id (re-imports replace, see
-- 020).  answered = 0 with score NULL when the buyer did not respond; score is 0–10 for every kind
-- (NPS: "how likely are you to recommend …").  order_id links post-purchase surveys to their order
-- ('' when none), which gives feedback by acquisition channel.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}.
CREATE TABLE IF NOT EXISTS {{DB}}.kpi_survey_responses {{ON_CLUSTER}}
(
    survey_id   String,
    kind        Enum8('exit_intent' = 1, 'post_purchase' = 2, 'nps' = 3),
    artisan_id  String,
    buyer_id    String DEFAULT '',
    order_id    String DEFAULT '',
    ts          DateTime64(3, 'UTC'),                        -- when the survey was delivered
    answered    Bool,
    score       Nullable(UInt8),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {{ENGINE:ReplacingMergeTree(ingested_at)}}
ORDER BY survey_id;
