// Package ari speaks the Asterisk REST Interface for pbxpulse: the event
// websocket (/ari/events), typed decoding of the ARI events pbxpulse
// normalizes, and the few REST reads a resync needs.
//
// The websocket client is written on github.com/coder/websocket instead of
// the event bus of github.com/CyCoreSystems/ari/v6, because that bus drops
// events once 100 are queued for a slow subscriber and its decoder fails on
// event types newer than ARI 2.0. Here a slow consumer slows the socket
// reader (back-pressure through TCP) and nothing is dropped; an event type
// this package does not know is delivered with its raw JSON, never as an
// error.
//
// Every JSON key used here appears either in the Asterisk 22.10.1 captures in
// testdata/asterisk/22.10.1/ari or in Asterisk's rest-api/api-docs/events.json
// (the "Asterisk REST Data Models"). ARI's key order is not stable, so all
// decoding goes through encoding/json.
package ari
