package pbxsim

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// capturedHTTP returns the status line, headers (name as spelled) and
// body of a captured ARI response.
func capturedHTTP(t *testing.T, name string) (string, map[string]string, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ariCapDir, "rest", name))
	if err != nil {
		t.Fatal(err)
	}
	_, resp, ok := strings.Cut(string(b), "---- response ----\r\n")
	if !ok {
		t.Fatalf("%s: no response", name)
	}
	head, body, _ := strings.Cut(resp, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	hdr := map[string]string{}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ": ")
		hdr[k] = v
	}
	return lines[0], hdr, body
}

// rawGet sends a request by hand and returns the raw response head (with
// header names exactly as written) and body.
func rawGet(t *testing.T, addr net.Addr, path, auth string) (string, []string, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:8088\r\nAccept: application/json\r\nConnection: close\r\n"
	if auth != "" {
		req += "Authorization: Basic " + auth + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	status, _ := r.ReadString('\n')
	var hdr []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
		hdr = append(hdr, strings.TrimRight(l, "\r\n"))
	}
	body, _ := io.ReadAll(r)
	return strings.TrimRight(status, "\r\n"), hdr, string(body)
}

func TestARIRESTMatchesCapture(t *testing.T) {
	s, _, addr := startARI(t, Config{})
	for _, e := range []string{"1001", "1002", "1003", "1004"} {
		s.Register(e)
	}
	const auth = "YXJpOmFyaS1zZWNyZXQ="
	for _, tc := range []struct {
		path, capture, auth string
		exact               bool // body byte for byte
	}{
		{"/ari/channels", "idle-noauth.http", "", true},
		{"/ari/channels/does-not-exist", "idle-channel-404.http", auth, true},
		{"/ari/channels", "idle-channels.http", auth, true},
		{"/ari/bridges", "idle-bridges.http", auth, true},
		{"/ari/endpoints", "idle-endpoints.http", auth, true},
		{"/ari/endpoints/PJSIP/1001", "idle-endpoint-1001.http", auth, true},
		{"/ari/applications", "idle-applications.http", auth, false}, // no websocket yet
		{"/ari/asterisk/ping", "idle-asterisk-ping.http", auth, false},
		{"/ari/asterisk/info", "idle-asterisk-info.http", auth, false},
	} {
		t.Run(tc.capture, func(t *testing.T) {
			wantStatus, wantHdr, wantBody := capturedHTTP(t, tc.capture)
			status, hdr, body := rawGet(t, addr, tc.path, tc.auth)
			if status != wantStatus {
				t.Errorf("status %q, capture %q", status, wantStatus)
			}
			got := map[string]string{}
			for _, h := range hdr {
				k, v, _ := strings.Cut(h, ": ")
				got[k] = v
			}
			for k, v := range wantHdr {
				switch k {
				case "Date", "Connection":
					if got[k] == "" {
						t.Errorf("no %s header", k)
					}
				case "Content-Length":
					if tc.exact && got[k] != v {
						t.Errorf("%s: %q, capture %q", k, got[k], v)
					}
				default:
					if got[k] != v {
						t.Errorf("header %s: %q, capture %q (all: %v)", k, got[k], v, hdr)
					}
				}
			}
			if _, ok := got["Content-Type"]; ok {
				t.Errorf("Content-Type spelled the Go way: %v", hdr)
			}
			if tc.exact && body != wantBody {
				t.Errorf("body\n got %s\nwant %s", body, wantBody)
			}
			if !tc.exact && !strings.HasPrefix(body, "[") &&
				strings.Join(topKeys(t, body), ",") != strings.Join(topKeys(t, wantBody), ",") {
				t.Errorf("keys of %s\n got %s\nwant %s", tc.path, body, wantBody)
			}
		})
	}
	// Applications once a websocket registered the app, as captured.
	ws := dialARI(t, addr, "app=monitor-app&subscribeAll=true", nil)
	_ = ws
	_, _, want := capturedHTTP(t, "idle-applications.http")
	if _, _, body := rawGet(t, addr, "/ari/applications", auth); body != want {
		t.Errorf("applications\n got %s\nwant %s", body, want)
	}
}

func TestARIRESTInCall(t *testing.T) {
	s, _, addr := startARI(t, Config{})
	s.Register("1001")
	s.Register("1002")
	c := s.Dial("1001", "1002")
	c.Answer()
	defer c.Hangup()
	_, _, wantCh := capturedHTTP(t, "incall-channels.http")
	code, _, body := httpGet(t, addr, "/ari/channels", true)
	if code != 200 {
		t.Fatal(code)
	}
	var got, want []map[string]any
	json.Unmarshal(body, &got)
	json.Unmarshal([]byte(wantCh), &want)
	if len(got) != len(want) {
		t.Fatalf("channels %s", body)
	}
	for i := range got {
		for _, k := range []string{"name", "state"} {
			if got[i][k] != want[i][k] {
				t.Errorf("channel %d %s=%v, capture %v", i, k, got[i][k], want[i][k])
			}
		}
		if got[i]["dialplan"].(map[string]any)["app_name"] != want[i]["dialplan"].(map[string]any)["app_name"] {
			t.Errorf("channel %d dialplan %v", i, got[i]["dialplan"])
		}
	}
	ids := c.Uniqueids()
	code, _, one := httpGet(t, addr, "/ari/channels/"+ids[0], true)
	if code != 200 || !strings.Contains(string(one), `"id":"`+ids[0]+`"`) {
		t.Errorf("GET channel: %d %s", code, one)
	}
	_, _, wantBr := capturedHTTP(t, "incall-bridges.http")
	_, _, br := httpGet(t, addr, "/ari/bridges", true)
	var gb, wb []map[string]any
	json.Unmarshal(br, &gb)
	json.Unmarshal([]byte(wantBr), &wb)
	if len(gb) != 1 || gb[0]["technology"] != wb[0]["technology"] || len(gb[0]["channels"].([]any)) != 2 {
		t.Errorf("bridges %s", br)
	}
	if strings.Join(topKeys(t, string(br[1:len(br)-1])), ",") != strings.Join(topKeys(t, wantBr[1:len(wantBr)-1]), ",") {
		t.Errorf("bridge keys %s", br)
	}
	_, _, eps := httpGet(t, addr, "/ari/endpoints/PJSIP/1002", true)
	if !strings.Contains(string(eps), `"channel_ids":["`+ids[1]+`"]`) {
		t.Errorf("endpoint in call %s", eps)
	}
}

func TestARIRESTErrors(t *testing.T) {
	_, _, addr := startARI(t, Config{})
	for _, tc := range []struct {
		path       string
		auth       bool
		code       int
		body, hdrK string
	}{
		{"/ari/endpoints/PJSIP/9999", true, 404, `{"message":"Endpoint not found"}`, ""},
		{"/ari/endpoints/SIP", true, 404, `{"message":"No Endpoints found - invalid tech SIP"}`, ""},
		{"/ari/bridges/nope", true, 404, `{"message":"Bridge not found"}`, ""},
		{"/ari/applications/nope", true, 404, `{"message":"Application not found"}`, ""},
		{"/ari/nothing", true, 404, `{"message":"Resource not found"}`, ""},
		{"/ari/channels/", true, 404, `{"message":"ARI URLs do not end with a slash. Try /ari/channels"}`, ""},
		{"/ari/channels?api_key=ari:ari-secret", false, 200, `[]`, ""},
		{"/ari/channels?api_key=ari:wrong", false, 401, `{"message":"Authentication required"}`, "Www-Authenticate"},
	} {
		code, hdr, body := httpGet(t, addr, tc.path, tc.auth)
		if code != tc.code || string(body) != tc.body {
			t.Errorf("%s: %d %s, want %d %s", tc.path, code, body, tc.code, tc.body)
		}
		if tc.hdrK != "" && hdr.Get(tc.hdrK) != `Basic realm="Asterisk REST Interface"` {
			t.Errorf("%s: %v", tc.path, hdr)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+addr.String()+"/ari/channels", nil)
	req.SetBasicAuth("ari", "ari-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 405 || string(b) != `{"message":"Invalid method"}` {
		t.Errorf("DELETE: %d %s", resp.StatusCode, b)
	}
}
