package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
	"github.com/pbxpulse/pbxpulse/test/eventgen"
	"github.com/pbxpulse/pbxpulse/test/stack"
)

// chaosSkipTables are the tables whose rows legitimately depend on where
// commits fell rather than on the stream: goose's bookkeeping, the deltas
// (one version per commit), the position itself, and the ids of recently
// applied events (one row per commit). Every other table of the database
// is a projection and is compared.
var chaosSkipTables = map[string]bool{
	"goose_db_version":   true,
	"deltas":             true,
	"projector_position": true,
	"projector_seen":     true,
}

// chaosContentTables must hold rows after the run when they exist, so that
// the comparison cannot pass on two empty databases.
var chaosContentTables = []string{"pbx_status", "endpoints", "calls", "call_history"}

const chaosTenant = "acme"

// TestProjectorChaos streams 100,000 generated events (eventgen: several
// PBXs, overlapping calls of every kind, registrations, queues, link drops
// and resyncs; plus about 0.5% stored twice, past JetStream's duplicate
// window) into JetStream while the projector is killed with SIGKILL at
// random moments and restarted, and Postgres is crash-restarted once.
// Once the projector has applied the whole stream, a second projector
// replays the same stream into an empty database; every projection table
// (found in the catalog, so that new ones are covered) must then hold the
// same rows in both databases.
//
// The randomness (the stream and the chaos) comes from one seed, logged at
// the start; PBXPULSE_CHAOS_SEED=<seed> runs the same stream and schedule
// again. PBXPULSE_CHAOS_EVENTS overrides the number of events.
func TestProjectorChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PBXPULSE_CHAOS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("PBXPULSE_CHAOS_SEED: %v", err)
		}
	}
	total := 100_000
	if testing.Short() {
		total = 20_000
	}
	if v := os.Getenv("PBXPULSE_CHAOS_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			t.Fatalf("PBXPULSE_CHAOS_EVENTS=%q: want a number of at least 1000", v)
		}
		total = n
	}
	t.Logf("chaos seed %d, %d events (rerun with PBXPULSE_CHAOS_SEED=%d)", seed, total, seed)
	rng := rand.New(rand.NewPCG(seed, ^seed))
	began := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	s, killedDB, cleanDB := startChaosStack(t)
	if err := s.StartService("projector"); err != nil {
		t.Fatal(err)
	}

	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureEventStream(ctx, js, chaosTenant, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}

	// Publish at a bounded rate, so that the kills fall while the stream
	// grows and not only while the projector catches up.
	gen := eventgen.New(eventgen.Config{Tenant: chaosTenant, Seed: seed, PBXs: 3, Extensions: 20, Trunks: 2, ConcurrentCalls: 6})
	events := make([]*pb.Event, 0, total)
	dups := 0
	pubDone := make(chan error, 1)
	go func() {
		const rate = 4000 // events per second
		prng := rand.New(rand.NewPCG(seed, 1))
		start := time.Now()
		for len(events) < total {
			chunk := gen.Take(min(1000, total-len(events)))
			events = append(events, chunk...)
			if err := eventgen.Publish(ctx, js, chunk); err != nil {
				pubDone <- err
				return
			}
			// A few recent events are stored a second time, as when a
			// collector publishes again after JetStream's duplicate window:
			// the projector must apply each once, across its restarts too.
			for range prng.IntN(10) {
				ev := events[len(events)-1-prng.IntN(min(len(events), 5000))]
				msg, err := bus.Message(ev)
				if err == nil {
					_, err = js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.GetId()+"/again"))
				}
				if err != nil {
					pubDone <- fmt.Errorf("publish a duplicate: %w", err)
					return
				}
				dups++
			}
			ahead := time.Until(start.Add(time.Duration(len(events)) * time.Second / rate))
			select {
			case <-ctx.Done():
				pubDone <- ctx.Err()
				return
			case <-time.After(ahead):
			}
		}
		pubDone <- nil
	}()

	const minKills = 6
	kills, published, pgRestarted := 0, false, s.PG == nil
	if s.PG == nil {
		t.Log("DATABASE_URL names an outside server: Postgres is not restarted")
	}
	var positions []string
	for !published || kills < minKills || !pgRestarted {
		select {
		case err := <-pubDone:
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			published = true
			t.Logf("published %d events and %d duplicates in %s", total, dups, time.Since(began).Round(time.Millisecond))
			continue
		case <-time.After(time.Duration(150+rng.IntN(2350)) * time.Millisecond):
		}
		if done, err := s.Exited("projector"); done {
			t.Fatalf("the projector exited by itself: %v", err)
		}
		if !pgRestarted && kills >= 2 && rng.IntN(3) == 0 {
			pos := projectorPosition(ctx, killedDB)
			if err := s.RestartPostgres(ctx); err != nil {
				t.Fatal(err)
			}
			pgRestarted = true
			t.Logf("postgres crash-restarted under the running projector (at seq %d)", pos)
			continue
		}
		s.Kill("projector")
		kills++
		positions = append(positions, strconv.FormatUint(projectorPosition(ctx, killedDB), 10))
		// Sometimes the projector stays down a while, sometimes it is back at once.
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Duration(rng.IntN(400)) * time.Millisecond):
		}
		if err := s.StartService("projector"); err != nil {
			t.Fatal(err)
		}
	}
	last := chaosStreamLastSeq(t, js)
	t.Logf("projector killed %d times, at committed seqs %s of %d", kills, strings.Join(positions, ", "), last)
	if last < uint64(total) {
		t.Fatalf("stream ends at seq %d, %d events were published", last, total)
	}

	waitPosition(ctx, t, s, "projector", killedDB, last)
	t.Logf("killed projector caught up at %s", time.Since(began).Round(time.Millisecond))
	replayStart := time.Now()
	if err := s.StartNamed("projector-clean", "projector", "DATABASE_URL="+cleanDB); err != nil {
		t.Fatal(err)
	}
	waitPosition(ctx, t, s, "projector-clean", cleanDB, last)
	t.Logf("clean replay of %d events took %s", last, time.Since(replayStart).Round(time.Millisecond))
	s.StopService("projector")
	s.StopService("projector-clean")

	got, err := dumpProjections(ctx, killedDB)
	if err != nil {
		t.Fatal(err)
	}
	want, err := dumpProjections(ctx, cleanDB)
	if err != nil {
		t.Fatal(err)
	}
	compareProjections(t, got, want, events)
	t.Logf("chaos test took %s", time.Since(began).Round(time.Millisecond))
}

// startChaosStack starts NATS and a Postgres cluster of the test's own (so
// that restarting it disturbs nobody; the server of DATABASE_URL when that
// is set) with two empty databases: one for the projector that is killed,
// one for the clean replay.
func startChaosStack(t *testing.T) (s *stack.Stack, killedDB, cleanDB string) {
	t.Helper()
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "services.log"))
	if err != nil {
		t.Fatal(err)
	}
	opt := stack.Options{Dir: dir, BinDir: binDir, Tenant: chaosTenant, Output: logf}
	if os.Getenv("DATABASE_URL") != "" {
		opt.DatabaseURL = testenv.Postgres(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err = stack.StartInfra(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 30000 {
				b = b[len(b)-30000:]
			}
			t.Logf("service logs (tail):\n%s", b)
		}
	})
	killedDB, cleanDB = s.DatabaseURL, ""
	if s.PG != nil {
		if err := stack.CreateDatabase(ctx, s.PG.DSN("postgres"), "clean"); err != nil {
			t.Fatal(err)
		}
		cleanDB = s.PG.DSN("clean")
	} else {
		cleanDB = testenv.Postgres(t)
	}
	return s, killedDB, cleanDB
}

// projectorPosition is the last stream sequence the projector committed
// (0 when there is none yet or the database does not answer).
func projectorPosition(ctx context.Context, dsn string) uint64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0
	}
	defer conn.Close(ctx)
	var seq *int64
	if err := conn.QueryRow(ctx, `SELECT max(stream_seq) FROM projector_position WHERE tenant=$1`, chaosTenant).Scan(&seq); err != nil || seq == nil {
		return 0
	}
	return uint64(*seq)
}

func chaosStreamLastSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), bus.EventStream(chaosTenant))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// waitPosition waits until the projector process name has committed the
// stream up to last.
func waitPosition(ctx context.Context, t *testing.T, s *stack.Stack, name, dsn string, last uint64) {
	t.Helper()
	testenv.Eventually(t, 3*time.Minute, func() error {
		if done, err := s.Exited(name); done {
			t.Fatalf("%s exited: %v", name, err)
		}
		if p := projectorPosition(ctx, dsn); p != last {
			return fmt.Errorf("%s at seq %d of %d", name, p, last)
		}
		return nil
	})
}

// tableRows is one table's content: its primary key columns and every row
// as canonical JSON text (jsonb orders keys), sorted.
type tableRows struct {
	pk   []string
	rows []string
}

// dumpProjections reads every table of every user schema except
// chaosSkipTables.
func dumpProjections(ctx context.Context, dsn string) (map[string]*tableRows, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	defer conn.Close(ctx)
	// Row-level security does not apply to the superuser the tests run as;
	// naming the tenant lets a less privileged DATABASE_URL see its rows too.
	if _, err := conn.Exec(ctx, `SELECT set_config('pbxpulse.tenant', $1, false)`, chaosTenant); err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	rows, _ := conn.Query(ctx, `SELECT table_schema, table_name FROM information_schema.tables
		WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
		AND table_schema NOT LIKE 'pg\_%' ORDER BY 1, 2`)
	type tbl struct{ schema, name string }
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tbl, error) {
		var x tbl
		return x, r.Scan(&x.schema, &x.name)
	})
	if err != nil {
		return nil, fmt.Errorf("dump: list tables: %w", err)
	}
	out := map[string]*tableRows{}
	for _, tb := range tables {
		if chaosSkipTables[tb.name] {
			continue
		}
		ident := pgx.Identifier{tb.schema, tb.name}.Sanitize()
		key := tb.name
		if tb.schema != "public" {
			key = tb.schema + "." + tb.name
		}
		rows, _ := conn.Query(ctx, `SELECT a.attname FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`, ident)
		pk, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("dump: primary key of %s: %w", key, err)
		}
		rows, _ = conn.Query(ctx, `SELECT to_jsonb(t)::text FROM `+ident+` t`)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("dump: %s: %w", key, err)
		}
		sort.Strings(lines)
		out[key] = &tableRows{pk: pk, rows: lines}
	}
	return out, nil
}

// compareProjections reports every table whose rows differ between the
// killed projector's database (got) and the clean replay's (want), with the
// first differing rows and the events that concern them.
func compareProjections(t *testing.T, got, want map[string]*tableRows, events []*pb.Event) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if want[n] == nil {
			t.Errorf("table %s exists only in the killed projector's database", n)
		}
	}
	sort.Strings(names)
	var counts []string
	total := 0
	for _, n := range names {
		w, g := want[n], got[n]
		counts = append(counts, fmt.Sprintf("%s=%d", n, len(w.rows)))
		total += len(w.rows)
		if g == nil {
			t.Errorf("table %s exists only in the clean replay's database", n)
			continue
		}
		if slices.Equal(g.rows, w.rows) {
			continue
		}
		t.Errorf("table %s differs: %s", n, describeDiff(n, w.pk, g.rows, w.rows, events))
	}
	t.Logf("compared %d tables, %d rows: %s", len(names), total, strings.Join(counts, " "))
	if total == 0 {
		t.Fatal("the clean replay produced no rows at all: the comparison proves nothing")
	}
	present := 0
	for _, n := range chaosContentTables {
		if w := want[n]; w != nil {
			present++
			if len(w.rows) == 0 {
				t.Errorf("table %s is empty after %d events", n, len(events))
			}
		}
	}
	if present < 2 {
		t.Errorf("fewer than two of %v exist: the content check needs updating to the new schema", chaosContentTables)
	}
}

// describeDiff pairs rows by primary key and says which are missing,
// extra, or different (field by field, view bodies decoded), at most five
// of each, with the events that concern them.
func describeDiff(table string, pk []string, got, want []string, events []*pb.Event) string {
	index := func(rows []string) (map[string]map[string]json.RawMessage, []string) {
		m := map[string]map[string]json.RawMessage{}
		var keys []string
		for _, r := range rows {
			var cols map[string]json.RawMessage
			if err := json.Unmarshal([]byte(r), &cols); err != nil {
				continue
			}
			k := rowKey(pk, cols, r)
			m[k] = cols
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return m, keys
	}
	gm, gk := index(got)
	wm, wk := index(want)
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows after the kills, %d in the clean replay (key %v)", len(got), len(want), pk)
	const limit = 5
	shown := 0
	for _, k := range wk {
		if _, ok := gm[k]; !ok && shown < limit {
			shown++
			fmt.Fprintf(&b, "\n  missing after the kills: %s%s", render(table, wm[k]), relatedEvents(k, events))
		}
	}
	shown = 0
	for _, k := range gk {
		if _, ok := wm[k]; !ok && shown < limit {
			shown++
			fmt.Fprintf(&b, "\n  extra after the kills: %s%s", render(table, gm[k]), relatedEvents(k, events))
		}
	}
	shown = 0
	for _, k := range wk {
		g, ok := gm[k]
		if !ok || shown >= limit {
			continue
		}
		diffs := diffColumns(table, g, wm[k])
		if len(diffs) == 0 {
			continue
		}
		shown++
		fmt.Fprintf(&b, "\n  row %s differs (after the kills ≠ clean replay):", k)
		for _, d := range diffs {
			b.WriteString("\n    " + d)
		}
		b.WriteString(relatedEvents(k, events))
	}
	return b.String()
}

// rowKey is the row's primary key values, or the whole row without one.
func rowKey(pk []string, cols map[string]json.RawMessage, row string) string {
	if len(pk) == 0 {
		return row
	}
	parts := make([]string, len(pk))
	for i, c := range pk {
		parts[i] = string(cols[c])
	}
	return strings.Join(parts, ",")
}

func render(table string, cols map[string]json.RawMessage) string {
	var names []string
	for c := range cols {
		names = append(names, c)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, c := range names {
		v, _ := value(table, cols[c])
		parts[i] = c + "=" + v
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// diffColumns lists the columns that differ; decoded view bodies field by field.
func diffColumns(table string, got, want map[string]json.RawMessage) []string {
	names := map[string]bool{}
	for c := range got {
		names[c] = true
	}
	for c := range want {
		names[c] = true
	}
	var out []string
	for _, c := range slices.Sorted(maps.Keys(names)) {
		if string(got[c]) == string(want[c]) {
			continue
		}
		gs, gv := value(table, got[c])
		ws, wv := value(table, want[c])
		if gv != nil && wv != nil {
			jsonDiff(c, gv, wv, &out)
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s ≠ %s", c, gs, ws))
	}
	return out
}

// jsonDiff appends one line per leaf that differs between a and b.
func jsonDiff(path string, a, b any, out *[]string) {
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			keys := map[string]bool{}
			for k := range av {
				keys[k] = true
			}
			for k := range bv {
				keys[k] = true
			}
			for _, k := range slices.Sorted(maps.Keys(keys)) {
				jsonDiff(path+"."+k, av[k], bv[k], out)
			}
			return
		}
	case []any:
		if bv, ok := b.([]any); ok {
			for i := range max(len(av), len(bv)) {
				var x, y any
				if i < len(av) {
					x = av[i]
				}
				if i < len(bv) {
					y = bv[i]
				}
				jsonDiff(fmt.Sprintf("%s[%d]", path, i), x, y, out)
			}
			return
		}
	}
	if !reflect.DeepEqual(a, b) {
		x, _ := json.Marshal(a)
		y, _ := json.Marshal(b)
		*out = append(*out, fmt.Sprintf("%s: %s ≠ %s", path, x, y))
	}
}

// viewTypes guesses the protobuf message a table's bytea body holds, to
// print it readably; an unknown table's bodies are printed in hex.
var viewTypes = map[string]string{
	"pbx_status": "PbxView", "endpoints": "EndpointView", "calls": "CallView",
	"trunk_registrations": "TrunkRegistrationView", "queues": "QueueView", "call_history": "CallRecord",
}

// value prints one jsonb value; a bytea ("\\x...") as its decoded view
// message when the table's message type is known, also returned as
// generic JSON for diffing.
func value(table string, raw json.RawMessage) (string, any) {
	var s string
	if json.Unmarshal(raw, &s) != nil || !strings.HasPrefix(s, `\x`) {
		return string(raw), nil
	}
	data, err := hex.DecodeString(s[2:])
	if err != nil {
		return string(raw), nil
	}
	if name, ok := viewTypes[table]; ok {
		if mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName("pbxpulse.v1." + name)); err == nil {
			m := mt.New().Interface()
			if proto.Unmarshal(data, m) == nil {
				if text, err := protojson.Marshal(m); err == nil {
					var v any
					if json.Unmarshal(text, &v) == nil {
						return name + string(text), v
					}
				}
			}
		}
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s, nil
}

// relatedEvents lists (the first of) the generated events that name the
// key's values exactly: the call, channel, endpoint, queue or trunk the row
// is about.
func relatedEvents(key string, events []*pb.Event) string {
	var needles []string
	pbx := ""
	for _, part := range strings.Split(key, ",") {
		var v string
		if json.Unmarshal([]byte(part), &v) != nil || len(v) < 3 || v == chaosTenant {
			continue
		}
		if strings.HasPrefix(v, "pbx") {
			pbx = v
			continue
		}
		needles = append(needles, `"`+v+`"`)
	}
	if len(needles) == 0 {
		return ""
	}
	var hits []int
	for i, e := range events {
		if pbx != "" && e.PbxId != pbx {
			continue
		}
		text, _ := protojson.Marshal(e)
		if slices.ContainsFunc(needles, func(s string) bool { return strings.Contains(string(text), s) }) {
			hits = append(hits, i)
		}
	}
	if len(hits) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n    %d events name %s (#n: position in the generated stream):", len(hits), strings.Join(needles, " "))
	const first, last = 8, 17 // the beginning, and the latest (what the row should say now)
	for j, i := range hits {
		if len(hits) > first+last && j == first {
			fmt.Fprintf(&b, "\n      ... %d more ...", len(hits)-first-last)
		}
		if len(hits) > first+last && j >= first && j < len(hits)-last {
			continue
		}
		e := events[i]
		d, ty := bus.Kind(e)
		fmt.Fprintf(&b, "\n      #%d %s session_seq=%d %s.%s %s", i+1, e.PbxId, e.SessionSeq, d, ty, payloadText(e))
	}
	return b.String()
}

// payloadText is the event's payload as one line of JSON, shortened.
func payloadText(e *pb.Event) string {
	m := e.ProtoReflect()
	f := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload"))
	if f == nil {
		return ""
	}
	text, err := protojson.Marshal(m.Get(f).Message().Interface())
	if err != nil {
		return ""
	}
	var v any
	if json.Unmarshal(text, &v) == nil {
		text, _ = json.Marshal(v) // protojson's spacing is deliberately unstable
	}
	if len(text) > 300 {
		return string(text[:300]) + "..."
	}
	return string(text)
}
