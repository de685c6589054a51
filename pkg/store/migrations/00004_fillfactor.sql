-- +goose Up
-- The live views are rewritten in place all day: an endpoint's row on every
-- change of its state, a call's on every step. Room left in each page lets
-- Postgres update a row where it stands (a HOT update: no new index entry),
-- which is most of the cost of a projector commit.
ALTER TABLE endpoints SET (fillfactor = 50);
ALTER TABLE calls SET (fillfactor = 50);
ALTER TABLE pbx_status SET (fillfactor = 50);
ALTER TABLE queues SET (fillfactor = 50);

-- +goose Down
ALTER TABLE endpoints RESET (fillfactor);
ALTER TABLE calls RESET (fillfactor);
ALTER TABLE pbx_status RESET (fillfactor);
ALTER TABLE queues RESET (fillfactor);
