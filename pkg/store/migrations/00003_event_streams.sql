-- +goose Up
-- Events moved from the single stream PBX_EVENTS to one stream per tenant
-- (PBX_EVENTS_<tenant>). A position records the stream its stream_seq
-- counts in; positions that have read events read them in PBX_EVENTS.
-- The projector moves a position to its tenant's stream when it starts.
ALTER TABLE projector_position ADD COLUMN stream text NOT NULL DEFAULT '';
UPDATE projector_position SET stream = 'PBX_EVENTS' WHERE stream_seq > 0;

-- +goose Down
ALTER TABLE projector_position DROP COLUMN stream;
