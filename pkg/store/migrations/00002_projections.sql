-- +goose Up
-- Projections, version 2: call history, queues, trunk health, rebuild
-- generations and row-level security per tenant.
--
-- Every row is derived from the event stream. The live views of version 1
-- are dropped rather than converted: the projector finds no position and
-- replays the stream from its beginning, which rebuilds them all.
DROP TABLE deltas, trunk_registrations, channels, calls, contacts, endpoints, pbx_status, projector_position;

-- Where each tenant's projection stands. gen is the generation readers use:
-- `projector rebuild` fills generation gen+1 beside it and then moves gen in
-- the same transaction that checks the live projector's position.
CREATE TABLE projector_position (
    tenant     text PRIMARY KEY,
    gen        integer NOT NULL DEFAULT 1,
    stream_seq bigint NOT NULL,  -- last JetStream sequence applied
    version    bigint NOT NULL   -- last view version committed
);

-- Live views. Each row keeps its view message (protobuf, pbxpulse.v1) in
-- body, and the columns a reader filters on beside it.
CREATE TABLE pbx_status (
    tenant text NOT NULL,
    gen    integer NOT NULL,
    pbx_id text NOT NULL,
    state  text NOT NULL,
    body   bytea NOT NULL, -- PbxView
    PRIMARY KEY (tenant, gen, pbx_id)
);

CREATE TABLE endpoints (
    tenant text NOT NULL,
    gen    integer NOT NULL,
    pbx_id text NOT NULL,
    name   text NOT NULL,
    kind   text NOT NULL,
    status text NOT NULL,
    body   bytea NOT NULL, -- EndpointView
    PRIMARY KEY (tenant, gen, pbx_id, name)
);

CREATE TABLE calls (
    tenant     text NOT NULL,
    gen        integer NOT NULL,
    pbx_id     text NOT NULL,
    linkedid   text NOT NULL,
    state      text NOT NULL,
    started_at timestamptz,
    body       bytea NOT NULL, -- CallView
    PRIMARY KEY (tenant, gen, pbx_id, linkedid)
);

CREATE TABLE trunk_registrations (
    tenant text NOT NULL,
    gen    integer NOT NULL,
    pbx_id text NOT NULL,
    key    text NOT NULL,
    status text NOT NULL,
    body   bytea NOT NULL, -- TrunkRegistrationView
    PRIMARY KEY (tenant, gen, pbx_id, key)
);

CREATE TABLE queues (
    tenant text NOT NULL,
    gen    integer NOT NULL,
    pbx_id text NOT NULL,
    queue  text NOT NULL,
    body   bytea NOT NULL, -- QueueView
    PRIMARY KEY (tenant, gen, pbx_id, queue)
);

-- Call history (CDR): one row per finished call.
CREATE TABLE call_history (
    tenant            text NOT NULL,
    gen               integer NOT NULL,
    pbx_id            text NOT NULL,
    linkedid          text NOT NULL,
    started_at        timestamptz,
    answered_at       timestamptz,
    ended_at          timestamptz,
    ring_seconds      double precision NOT NULL,
    talk_seconds      double precision NOT NULL,
    disposition       text NOT NULL,
    hangup_cause      integer NOT NULL,
    hangup_by         text NOT NULL,
    caller_num        text NOT NULL,
    caller_name       text NOT NULL,
    callee_num        text NOT NULL,
    callee_name       text NOT NULL,
    direction         text NOT NULL,
    trunk             text NOT NULL,
    queue             text NOT NULL,
    parties           text[] NOT NULL,
    body              bytea NOT NULL, -- CallRecord
    PRIMARY KEY (tenant, gen, pbx_id, linkedid)
);
CREATE INDEX call_history_started ON call_history (tenant, gen, started_at DESC, pbx_id, linkedid);
CREATE INDEX call_history_parties ON call_history USING gin (parties);
CREATE INDEX call_history_ended ON call_history (tenant, gen, ended_at);

-- Trunk health history: registration flaps and round-trip samples.
CREATE TABLE trunk_health (
    tenant         text NOT NULL,
    gen            integer NOT NULL,
    pbx_id         text NOT NULL,
    trunk          text NOT NULL,
    at             timestamptz NOT NULL,
    kind           text NOT NULL,
    status         text NOT NULL,
    cause          text NOT NULL,
    roundtrip_usec bigint NOT NULL,
    PRIMARY KEY (tenant, gen, pbx_id, trunk, at, kind)
);

-- Ids of recently applied events (8-byte hashes with their stream
-- sequences, one row per commit), so that an event published twice under
-- different stream sequences is applied once, also across restarts.
CREATE TABLE projector_seen (
    tenant   text NOT NULL,
    gen      integer NOT NULL,
    last_seq bigint NOT NULL,
    ids      bytea NOT NULL,
    PRIMARY KEY (tenant, gen, last_seq)
);

-- Every committed version's changes, so that a gateway that missed a
-- notification (or a client that reconnects) can catch up without a gap.
CREATE TABLE deltas (
    tenant       text NOT NULL,
    version      bigint NOT NULL,
    body         bytea NOT NULL, -- protobuf pbxpulse.v1.Delta
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, version)
);

-- Tenancy: services read and write through the role pbxpulse_tenant, and
-- row-level security lets that role see only the rows of the tenant named
-- by the transaction's pbxpulse.tenant setting (none when it is unset).
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pbxpulse_tenant') THEN
        CREATE ROLE pbxpulse_tenant NOLOGIN NOBYPASSRLS;
    END IF;
    IF NOT pg_has_role(current_user, 'pbxpulse_tenant', 'MEMBER') THEN
        EXECUTE format('GRANT pbxpulse_tenant TO %I', current_user);
    END IF;
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['projector_position', 'pbx_status', 'endpoints', 'calls', 'trunk_registrations',
                             'queues', 'call_history', 'trunk_health', 'projector_seen', 'deltas'] LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO pbxpulse_tenant', t);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant = current_setting('pbxpulse.tenant', true))
            WITH CHECK (tenant = current_setting('pbxpulse.tenant', true))$p$, t);
    END LOOP;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO pbxpulse_tenant', current_schema());
END
$$;
-- +goose StatementEnd

-- Bodies of a commit's applied ids and deltas are written once and read
-- rarely: store them without trying to compress them (pglz would cost the
-- projector's commit more than it saves).
ALTER TABLE projector_seen ALTER COLUMN ids SET STORAGE EXTERNAL;
ALTER TABLE deltas ALTER COLUMN body SET STORAGE EXTERNAL;
-- Live-view rows are updated over and over: room on each page lets
-- Postgres update them in place (HOT) without touching the index.
ALTER TABLE calls SET (fillfactor = 70);
ALTER TABLE endpoints SET (fillfactor = 70);
ALTER TABLE queues SET (fillfactor = 70);

-- +goose Down
DROP TABLE deltas, projector_seen, trunk_health, call_history, queues, trunk_registrations, calls, endpoints, pbx_status, projector_position;
