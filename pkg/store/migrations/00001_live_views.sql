-- +goose Up
-- Live views of each tenant. Every row is derived from the event stream and
-- can be rebuilt by replaying it; times come from the events, never now(),
-- so that a replay yields the same rows.

CREATE TABLE projector_position (
    tenant     text PRIMARY KEY,
    stream_seq bigint NOT NULL,  -- last JetStream sequence applied
    version    bigint NOT NULL   -- last view version committed
);

CREATE TABLE pbx_status (
    tenant  text NOT NULL,
    pbx_id  text NOT NULL,
    state   text NOT NULL,
    detail  text NOT NULL DEFAULT '',
    attempt integer NOT NULL DEFAULT 0,
    banner  text NOT NULL DEFAULT '',
    since   timestamptz,
    PRIMARY KEY (tenant, pbx_id)
);

CREATE TABLE endpoints (
    tenant          text NOT NULL,
    pbx_id          text NOT NULL,
    name            text NOT NULL,
    technology      text NOT NULL,
    kind            text NOT NULL,
    status          text NOT NULL,
    device_state    text NOT NULL DEFAULT '',
    active_channels integer NOT NULL DEFAULT 0,
    updated_at      timestamptz,
    PRIMARY KEY (tenant, pbx_id, name)
);

CREATE TABLE contacts (
    tenant          text NOT NULL,
    pbx_id          text NOT NULL,
    endpoint        text NOT NULL,
    uri             text NOT NULL,
    status          text NOT NULL,
    roundtrip_usec  bigint NOT NULL DEFAULT 0,
    user_agent      text NOT NULL DEFAULT '',
    via_address     text NOT NULL DEFAULT '',
    expiration_time bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, pbx_id, endpoint, uri)
);

CREATE TABLE calls (
    tenant      text NOT NULL,
    pbx_id      text NOT NULL,
    linkedid    text NOT NULL,
    caller_num  text NOT NULL DEFAULT '',
    caller_name text NOT NULL DEFAULT '',
    callee_num  text NOT NULL DEFAULT '',
    callee_name text NOT NULL DEFAULT '',
    state       text NOT NULL,
    started_at  timestamptz,
    answered_at timestamptz,
    bridge_id   text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, pbx_id, linkedid)
);

CREATE TABLE channels (
    tenant         text NOT NULL,
    pbx_id         text NOT NULL,
    uniqueid       text NOT NULL,
    linkedid       text NOT NULL,
    position       integer NOT NULL, -- order within the call
    name           text NOT NULL,
    state          integer NOT NULL,
    state_desc     text NOT NULL DEFAULT '',
    caller_num     text NOT NULL DEFAULT '',
    caller_name    text NOT NULL DEFAULT '',
    connected_num  text NOT NULL DEFAULT '',
    connected_name text NOT NULL DEFAULT '',
    context        text NOT NULL DEFAULT '',
    exten          text NOT NULL DEFAULT '',
    bridge_id      text NOT NULL DEFAULT '',
    application    text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, pbx_id, uniqueid)
);
CREATE INDEX channels_call ON channels (tenant, pbx_id, linkedid);

CREATE TABLE trunk_registrations (
    tenant     text NOT NULL,
    pbx_id     text NOT NULL,
    key        text NOT NULL,
    client_uri text NOT NULL DEFAULT '',
    server_uri text NOT NULL DEFAULT '',
    status     text NOT NULL DEFAULT '',
    cause      text NOT NULL DEFAULT '',
    updated_at timestamptz,
    PRIMARY KEY (tenant, pbx_id, key)
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

-- +goose Down
DROP TABLE deltas, trunk_registrations, channels, calls, contacts, endpoints, pbx_status, projector_position;
