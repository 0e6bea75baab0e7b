-- KPI data: change and survey kinds become free-form labels; placebo changes; survey delivery status.
--
-- kpi_integration_changes.kind: any label (e.g. new_integration, version_upgrade, outage_fix, pricing_test),
--   so a new kind of change needs no schema change.  placebo = 1 marks a change that did not happen (a date
--   picked to test the analysis): integration_change_did reports it like any change, and its estimate
--   should be indistinguishable from zero.
-- kpi_survey_responses.kind: any label; which kinds are answered on the 0–10 recommend scale is the
--   queries' nps_kinds parameter (default: nps).  status: 'delivered' (reached the buyer: counts in the
--   response-rate denominator) or 'sent' (handed to the mailer, not confirmed delivered: left out).
--   ts stays the delivery time (the send time while status = 'sent'); answered_at is when the answer was
--   recorded, NULL when unknown or unanswered.  A survey belongs to the window holding its delivery time,
--   whenever the answer was recorded.
-- Existing rows keep their kind text; the new columns take their defaults.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}.
ALTER TABLE {{DB}}.kpi_integration_changes {{ON_CLUSTER}}
    MODIFY COLUMN kind LowCardinality(String);
ALTER TABLE {{DB}}.kpi_integration_changes {{ON_CLUSTER}}
    ADD COLUMN IF NOT EXISTS placebo Bool DEFAULT false AFTER ts;
ALTER TABLE {{DB}}.kpi_survey_responses {{ON_CLUSTER}}
    MODIFY COLUMN kind LowCardinality(String);
ALTER TABLE {{DB}}.kpi_survey_responses {{ON_CLUSTER}}
    ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT 'delivered' AFTER ts;
ALTER TABLE {{DB}}.kpi_survey_responses {{ON_CLUSTER}}
    ADD COLUMN IF NOT EXISTS answered_at Nullable(DateTime64(3, 'UTC')) AFTER answered;
