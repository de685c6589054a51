// Package web holds the live supervisor panel: the static HTML, JavaScript and
// CSS the gateway serves to browsers, embedded in the binary. The script is a
// handful of plain ES modules (app.js imports the others) that browsers load
// as they are: there is no build step.
//
// Every URL in the panel is relative (stylesheets, script and the WebSocket,
// which is "ws" next to index.html), so the gateway may mount Assets under any
// path prefix, e.g. http.StripPrefix("/monitor/", http.FileServerFS(web.Assets()))
// with the WebSocket handler at "/monitor/ws". Nothing is fetched from a CDN:
// the panel works offline.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Assets returns the panel's files with index.html at the root.
func Assets() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// fs.Sub fails only for an invalid path name; "static" is valid.
		panic("web: " + err.Error())
	}
	return sub
}
