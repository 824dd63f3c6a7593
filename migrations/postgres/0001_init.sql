-- Sluice base schema: logins, per-message receipts, rejected records.
--
-- Every statement is IF NOT EXISTS because `user_logins` may already exist,
-- created by someone else with exactly this plain DDL; the writer must load
-- into such a table, so it gets no extra columns, keys or constraints here.

CREATE TABLE IF NOT EXISTS user_logins (
    user_id          varchar(128),
    device_type      varchar(32),
    masked_ip        varchar(256),
    masked_device_id varchar(256),
    locale           varchar(32),
    app_version      integer,
    create_date      date
);

-- One row per committed queue message (envelope id, else the SQS MessageId),
-- written in the same transaction as the message's rows: a redelivered
-- message finds its receipt and is skipped, so each event lands once.
CREATE TABLE IF NOT EXISTS sluice_receipts (
    message_key  text PRIMARY KEY,
    committed_at timestamptz NOT NULL DEFAULT now(),
    row_count    integer NOT NULL
);

-- Messages or records the writer could not load; payload is masked JSON or,
-- when it did not parse, encrypted whole with the PII key (payload_format).
CREATE TABLE IF NOT EXISTS rejected_records (
    id             bigserial PRIMARY KEY,
    rejected_at    timestamptz NOT NULL DEFAULT now(),
    message_key    text NOT NULL,
    reason         text NOT NULL,
    payload        text NOT NULL,
    payload_format text NOT NULL
);

CREATE INDEX IF NOT EXISTS rejected_records_message_key_idx
    ON rejected_records (message_key);
