package gateway

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's OpenAPI document. docs/openapi.yaml is the copy
// people read and edit; go generate copies it here for go:embed, which
// cannot reach outside the package, and TestOpenAPICopyIsCurrent fails when
// the two differ.
//
//go:generate cp ../../../../docs/openapi.yaml openapi.yaml
//go:embed openapi.yaml
var openAPI []byte

// handleOpenAPI serves the OpenAPI document (no token needed: it describes
// the API, not a tenant's data).
func (g *Gateway) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	_, _ = w.Write(openAPI)
}
