package pgcluster

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartRestartStop(t *testing.T) {
	if _, err := BinDir(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, filepath.Join(t.TempDir(), "pg"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove()
	query := func() int {
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "select 1+1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if query() != 2 {
		t.Fatal("bad answer")
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if query() != 2 {
		t.Fatal("bad answer after restart")
	}
}
