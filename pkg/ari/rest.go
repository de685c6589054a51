package ari

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	ariv6 "github.com/CyCoreSystems/ari/v6"
	"github.com/CyCoreSystems/ari/v6/client/native"
)

// maxBody bounds one REST answer; a PBX's channel list is far smaller.
const maxBody = 64 << 20

// REST reads the state a resync needs: Asterisk's identity and the lists of
// channels, bridges and endpoints.
//
// Asterisk info goes through CyCoreSystems/ari/v6's typed call, which decodes
// Asterisk 22's answer correctly. The lists do not, for reasons the tests
// demonstrate against the captured Asterisk 22.10.1 bodies:
//
//   - ari/v6's List calls decode only the ids (and for endpoints
//     technology/resource) of GET /channels, /bridges, /endpoints and then
//     fetch every object again with one GET each: N+1 requests, and an
//     object that goes away in between (a channel hung up during a resync)
//     fails the whole read with a 404.
//   - Its ChannelData has no protocol_id, caller_rdnis or tenantid and its
//     DialplanCEP no app_name/app_data, so the channel's current application
//     (CoreShowChannel's Application) is lost.
//   - On an error status it decodes the error body into the list first, so
//     a 401 surfaces as a JSON "cannot unmarshal object" error without the
//     status code.
//   - It has no context: a request to a hung Asterisk never returns.
//
// So the lists are read here with one GET each and decoded into this
// package's types, the same ones the events use.
type REST struct {
	ep endpoint
	hc *http.Client
	v6 *native.Client
	// v6sem admits one ari/v6 call at a time: it cannot be cancelled, so a
	// call abandoned on ctx is left to finish, and at most one may linger.
	v6sem chan struct{}
}

// NewREST returns a REST client for cfg.URL, cfg.User and cfg.Password
// (Apps and the websocket settings are not used).
func NewREST(cfg Config) (*REST, error) {
	cfg = cfg.withDefaults()
	ep, err := cfg.endpoint()
	if err != nil {
		return nil, err
	}
	v6 := native.New(&native.Options{
		// Set explicitly: native.New otherwise falls back to ARI_* variables
		// of the environment and a random application name.
		Application: "pbxpulse", URL: ep.base, WebsocketURL: ep.base + "/events",
		Username: ep.user, Password: ep.password,
	})
	return &REST{ep: ep, hc: cfg.HTTPClient, v6: v6, v6sem: make(chan struct{}, 1)}, nil
}

// Info is Asterisk's identity (GET /asterisk/info).
type Info struct {
	Version  string
	EntityID string
	// SystemName is asterisk.conf's systemname ("" when not set).
	SystemName      string
	DefaultLanguage string
	StartupTime     time.Time
	LastReloadTime  time.Time
	BuildOS         string
	BuildMachine    string
	BuildDate       string
}

// Info reads Asterisk's version, entity id and start time.
func (r *REST) Info(ctx context.Context) (Info, error) {
	select {
	case r.v6sem <- struct{}{}:
	case <-ctx.Done():
		return Info{}, fmt.Errorf("ari: GET /asterisk/info: %w", ctx.Err())
	}
	type result struct {
		info *ariv6.AsteriskInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-r.v6sem }()
		info, err := r.v6.Asterisk().Info(nil)
		done <- result{info, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		return Info{}, fmt.Errorf("ari: GET /asterisk/info: %w", ctx.Err())
	}
	if res.err != nil {
		var re native.RequestError
		if errors.As(res.err, &re) {
			return Info{}, &HTTPError{Method: http.MethodGet, Path: "/asterisk/info", StatusCode: re.Code()}
		}
		return Info{}, redact(fmt.Errorf("ari: GET /asterisk/info: %w", res.err), r.ep.password)
	}
	in := res.info
	return Info{
		Version: in.SystemInfo.Version, EntityID: in.SystemInfo.EntityID,
		SystemName: in.ConfigInfo.Name, DefaultLanguage: in.ConfigInfo.DefaultLanguage,
		StartupTime:    time.Time(in.StatusInfo.StartupTime),
		LastReloadTime: time.Time(in.StatusInfo.LastReloadTime),
		BuildOS:        in.BuildInfo.Os, BuildMachine: in.BuildInfo.Machine, BuildDate: in.BuildInfo.Date,
	}, nil
}

// Channels lists every channel (GET /channels).
func (r *REST) Channels(ctx context.Context) ([]Channel, error) {
	var out []Channel
	return out, r.get(ctx, "/channels", &out)
}

// Bridges lists every bridge (GET /bridges).
func (r *REST) Bridges(ctx context.Context) ([]Bridge, error) {
	var out []Bridge
	return out, r.get(ctx, "/bridges", &out)
}

// Endpoints lists every endpoint of every technology (GET /endpoints).
func (r *REST) Endpoints(ctx context.Context) ([]Endpoint, error) {
	var out []Endpoint
	return out, r.get(ctx, "/endpoints", &out)
}

func (r *REST) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.ep.base+path, nil)
	if err != nil {
		return fmt.Errorf("ari: GET %s: %w", path, err)
	}
	req.SetBasicAuth(r.ep.user, r.ep.password)
	req.Header.Set("Accept", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return redact(fmt.Errorf("ari: GET %s: %w", path, err), r.ep.password)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return redact(fmt.Errorf("ari: GET %s: read body: %w", path, err), r.ep.password)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return httpError(http.MethodGet, path, resp.StatusCode, body)
	}
	if len(body) > maxBody {
		return fmt.Errorf("ari: GET %s: answer larger than %d bytes", path, maxBody)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("ari: GET %s: decode: %w", path, err)
	}
	return nil
}
