package gateway

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// The embedded copy is docs/openapi.yaml (go generate copies it).
func TestOpenAPICopyIsCurrent(t *testing.T) {
	docs, err := os.ReadFile("../../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(docs, openAPI) {
		t.Fatal("internal/gateway/openapi.yaml differs from docs/openapi.yaml: run go generate ./services/gateway/...")
	}
}

// registeredRoutes reads the patterns given to mux.Handle and mux.HandleFunc
// in the package's source, as "METHOD /path" with the prefix p as "/".
// Patterns that are not a plain concatenation of p and literals (the
// redirect of the bare prefix to prefix/) are not API routes and are left
// out.
func registeredRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var routes []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "mux" {
				return true
			}
			if pat, ok := concat(call.Args[0]); ok {
				routes = append(routes, pat)
			}
			return true
		})
	}
	if len(routes) < 10 {
		t.Fatalf("found only %d routes in the source: %q", len(routes), routes)
	}
	return routes
}

// concat evaluates "GET "+p+"api/v1/x" with p = "/".
func concat(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		return "/", e.Name == "p"
	case *ast.BinaryExpr:
		a, ok1 := concat(e.X)
		b, ok2 := concat(e.Y)
		return a + b, ok1 && ok2 && e.Op == token.ADD
	}
	return "", false
}

// documentedRoutes are the document's operations as "METHOD /path".
func documentedRoutes(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	return out
}

// Every route of the gateway is documented, and every documented one exists.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	registered, documented := registeredRoutes(t), documentedRoutes(doc)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is not in docs/openapi.yaml", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(registered, r) {
			t.Errorf("docs/openapi.yaml documents %q, which Handler does not register", r)
		}
	}
}

// Every documented operation answers on a running gateway, without and with
// a token, and what it answers matches the document (status, content type
// and body schema).
func TestOpenAPIMatchesGateway(t *testing.T) {
	doc := loadOpenAPI(t)
	// The document leaves objects open, as protobuf messages only ever gain
	// fields; here every field the gateway sends must be documented.
	no := false
	for _, s := range doc.Components.Schemas {
		if s.Value.Type.Is("object") && len(s.Value.Properties) > 0 && s.Value.AdditionalProperties.Has == nil && s.Value.AdditionalProperties.Schema == nil {
			s.Value.AdditionalProperties.Has = &no
		}
	}
	e := startAPIGateway(t)
	respond(t, e.nc, map[string]*pb.CommandReply{"": {Ok: true, Options: []*pb.ConfigOption{{Name: "type", Value: "endpoint"}}}})
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.FileBodyDecoder)

	// Query variants worth checking beside the bare operation.
	variants := map[string][]string{
		"/api/v1/history":    {"format=csv", "limit=0"},
		"/api/v1/snapshot":   {"at=" + time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), "at=yesterday"},
		"/api/v1/logs/stats": {"pbx=pbx1&from=" + time.Now().Add(-2*time.Hour).UTC().Format(time.RFC3339)},
	}
	ctx := context.Background()
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if path == "/ws" {
				checkWebSocket(t, e)
				continue
			}
			for _, query := range append([]string{""}, variants[path]...) {
				for _, token := range []string{"", tokAdmin} {
					name := method + " " + path + "?" + query
					if token == "" {
						name += " without token"
					}
					t.Run(name, func(t *testing.T) {
						target := strings.NewReplacer("{pbx}", "pbx1", "{action}", "config_get").Replace(path)
						var body io.Reader
						if method == http.MethodPost {
							body = strings.NewReader(`{"section":"1001"}`)
						}
						req, err := http.NewRequest(method, strings.TrimSuffix(e.base, "/")+target+"?"+query, body)
						if err != nil {
							t.Fatal(err)
						}
						if token != "" {
							req.Header.Set("Authorization", "Bearer "+token)
						}
						if method == http.MethodPost {
							req.Header.Set("Content-Type", "application/json")
						}
						resp, err := http.DefaultClient.Do(req)
						if err != nil {
							t.Fatal(err)
						}
						defer resp.Body.Close()
						data, err := io.ReadAll(resp.Body)
						if err != nil {
							t.Fatal(err)
						}
						if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
							t.Fatalf("%d %s", resp.StatusCode, data)
						}
						public := op.Security != nil && len(*op.Security) == 0
						if !public && token == "" && resp.StatusCode != http.StatusUnauthorized {
							t.Fatalf("answered %d without a token", resp.StatusCode)
						}
						in := &openapi3filter.ResponseValidationInput{
							RequestValidationInput: &openapi3filter.RequestValidationInput{
								Request:    req,
								PathParams: map[string]string{"pbx": "pbx1", "action": "config_get"},
								Route:      &routers.Route{Spec: doc, Path: path, PathItem: item, Method: method, Operation: op},
							},
							Status:  resp.StatusCode,
							Header:  resp.Header,
							Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
						}
						in.SetBodyBytes(data)
						if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
							t.Fatalf("%d %s %.300q does not match the document: %v", resp.StatusCode, resp.Header.Get("Content-Type"), data, err)
						}
					})
				}
			}
		}
	}
}

// checkWebSocket: GET ws upgrades with a token and answers 401 without one.
func checkWebSocket(t *testing.T, e apiEnv) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(e.base, "http") + "ws"
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tokViewer}}})
	if err != nil {
		t.Fatalf("ws: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("ws: %d", resp.StatusCode)
	}
	c.CloseNow()
	_, resp, err = websocket.Dial(ctx, u, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("ws without token: %v %v", resp, err)
	}
}
