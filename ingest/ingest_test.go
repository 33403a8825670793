package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

func TestNewValidatesConfig(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	rec := &recorder{}
	tests := []struct {
		name  string
		cfg   ingest.Config
		field string
	}{
		{"no conn", ingest.Config{Applier: rec}, "Conn"},
		{"no applier", ingest.Config{Conn: nc}, "Applier"},
		{"wildcard prefix", ingest.Config{Conn: nc, Applier: rec, Prefix: "presence.*"}, "Prefix"},
		{"empty prefix token", ingest.Config{Conn: nc, Applier: rec, Prefix: "a..b"}, "Prefix"},
		{"dotted stream", ingest.Config{Conn: nc, Applier: rec, Stream: "PRE.SENCE"}, "Stream"},
		{"stream no bucket may be named after", ingest.Config{Conn: nc, Applier: rec, Stream: "PRE$ENCE"}, "Stream"},
		{"stream too long", ingest.Config{Conn: nc, Applier: rec, Stream: strings.Repeat("S", 236)}, "Stream"},
		{"negative skew", ingest.Config{Conn: nc, Applier: rec, MaxClockSkew: -time.Second}, "MaxClockSkew"},
		{"negative max age", ingest.Config{Conn: nc, Applier: rec, MaxAge: -time.Hour}, "MaxAge"},
		{"negative replicas", ingest.Config{Conn: nc, Applier: rec, Replicas: -1}, "Replicas"},
		{"too many replicas", ingest.Config{Conn: nc, Applier: rec, Replicas: 6}, "Replicas"},
		{"negative partitions", ingest.Config{Conn: nc, Applier: rec, Partitions: -1}, "Partitions"},
		{"partition beyond the count", ingest.Config{Conn: nc, Applier: rec, Partitions: 4, Partition: 4}, "Partition 4"},
		{"negative partition", ingest.Config{Conn: nc, Applier: rec, Partitions: 4, Partition: -1}, "Partition -1"},
		{"partition of one", ingest.Config{Conn: nc, Applier: rec, Partition: 1}, "Partition 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ingest.New(tt.cfg)
			if !errors.Is(err, ingest.ErrConfig) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("New: %v, want an ErrConfig naming %s", err, tt.field)
			}
			if !strings.HasPrefix(err.Error(), "ingest: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	if _, err := ingest.New(ingest.Config{Conn: nc, Applier: rec, Prefix: "acme.presence"}); err != nil {
		t.Errorf("New with a two-token prefix: %v", err)
	}
}

func TestStartServerErrors(t *testing.T) {
	if _, _, err := ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1:-1"}); !errors.Is(err, ingest.ErrConfig) {
		t.Errorf("no StoreDir: %v, want ErrConfig", err)
	}
	if _, _, err := ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1", StoreDir: t.TempDir()}); !errors.Is(err, ingest.ErrConfig) {
		t.Errorf("no port: %v, want ErrConfig", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.conf")
	if err := os.WriteFile(bad, []byte("accounts { "), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: t.TempDir(), ConfigFile: bad})
	if !errors.Is(err, ingest.ErrServer) || !strings.Contains(err.Error(), "ConfigFile") {
		t.Errorf("bad config file: %v, want ErrServer naming ConfigFile", err)
	}
}

// TestEvents publishes valid and future-dated events with a plain publish and
// checks what the Applier gets, the streams created and the metrics.
func TestEvents(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	reg := prometheus.NewPedanticRegistry()
	nc := connect(t, url, reg)
	js, _ := jetstream.New(nc)
	r := startIngester(t, ingest.Config{Conn: nc, Registerer: reg, MaxAge: time.Hour})
	testenv.WaitFor(t, "readiness on an empty stream", r.Ready)

	future := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339Nano) }
	msgs := []struct{ subject, payload string }{
		{"presence.acme.login", `{"userId":"u1","ts":"2026-01-01T10:00:00.5Z","role":"OPERATOR",` +
			`"groupIds":["g1","g2","g1"],"chat":{"availability":"busy","maxSlots":3,"currentSlots":1}}`},
		{"presence.beta-2.status", `{"userId":"u2","availabilityStatus":"AVAILABLE","extra":{"x":[1]}}`},
		{"presence.acme.logout", `{"userId":"u1","ts":"` + future(time.Minute) + `"}`},
		{"presence.acme.heartbeat", `{"userId":"u3","ts":"` + future(time.Hour) + `"}`},
		{"presence.acme.profile", `{"userId":"stale-1","role":"bot"}`},
		{"presence.acme.slots", `{"userId":"u4","chat":{"currentSlots":null}}`},
	}
	for _, m := range msgs {
		publish(t, nc, m.subject, m.payload)
	}
	r.waitApplied(t, uint64(len(msgs)))

	// The stream's order, each event once; the future-dated heartbeat is
	// rejected.
	recs := r.rec.records()
	if len(recs) != 5 {
		t.Fatalf("applied %d events, want 5 (one is rejected): %+v", len(recs), recs)
	}
	want := []struct {
		tenant string
		typ    presence.Type
		user   string
	}{
		{"acme", presence.Login, "u1"},
		{"beta-2", presence.StatusChange, "u2"},
		{"acme", presence.Logout, "u1"},
		{"acme", presence.Profile, "stale-1"},
		{"acme", presence.Slots, "u4"},
	}
	for k, w := range want {
		if got := recs[k]; got.Tenant != w.tenant || got.Ev.Type != w.typ || got.Ev.UserID != w.user {
			t.Errorf("event %d: got %s %v %s, want %s %v %s", k, got.Tenant, got.Ev.Type, got.Ev.UserID, w.tenant, w.typ, w.user)
		}
	}
	login := recs[0].Ev
	if login.TS != time.Date(2026, 1, 1, 10, 0, 0, 5e8, time.UTC).UnixNano() || login.Role != presence.Operator ||
		!slices.Equal(login.GroupIDs, []string{"g1", "g2"}) || login.Chat != presence.Busy ||
		login.MaxSlots != 3 || login.CurrentSlots != 1 || !login.Has(presence.HasRole|presence.HasGroups|presence.HasChat) {
		t.Errorf("login decoded as %+v", login)
	}
	// No ts: the time the stream stored the message.
	stored := streamMsgs(t, js, "PRESENCE")[1].Time
	if got := recs[1].Ev.TS; got != stored.UnixNano() {
		t.Errorf("event without ts got TS %v, want the stored time %v", time.Unix(0, got), stored)
	}
	if recs[4].Ev.Has(presence.HasCurrentSlots) {
		t.Errorf("a null field counts as absent, got %+v", recs[4].Ev)
	}

	// The streams were created as the contract says.
	ctx := context.Background()
	for name, subject := range map[string]string{"PRESENCE": "presence.*.*", "PRESENCE_DEADLETTER": "deadletter.presence.>"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		c := s.CachedInfo().Config
		if !slices.Equal(c.Subjects, []string{subject}) || c.Storage != jetstream.FileStorage || c.MaxAge != time.Hour {
			t.Errorf("stream %s created with subjects %v, storage %v, max age %v", name, c.Subjects, c.Storage, c.MaxAge)
		}
		if name == "PRESENCE_DEADLETTER" && c.Duplicates != time.Hour {
			t.Errorf("dead-letter stream created with a duplicate window of %v, want 1h", c.Duplicates)
		}
	}
	if kv, err := js.KeyValue(ctx, "PRESENCE"+ingest.MarksSuffix); err != nil {
		t.Errorf("marks bucket: %v", err)
	} else if st, err := kv.Status(ctx); err != nil || st.History() != 1 {
		t.Errorf("marks bucket status %v, %v", st, err)
	}
	dls := streamMsgs(t, js, "PRESENCE_DEADLETTER")
	if len(dls) != 1 || dls[0].Subject != "deadletter.presence.acme.heartbeat" ||
		!strings.Contains(dls[0].Header.Get(ingest.HeaderError), "ts") {
		t.Errorf("dead letters: %+v", dls)
	}

	if r.Pending() != 0 || !r.Ready() {
		t.Errorf("caught up, yet Pending %d, Ready %v", r.Pending(), r.Ready())
	}
	expected := `
# HELP presence_events_total Events read from the stream, by type and by what became of them (applied, stale or rejected).
# TYPE presence_events_total counter
presence_events_total{result="applied",type="heartbeat"} 0
presence_events_total{result="applied",type="login"} 1
presence_events_total{result="applied",type="logout"} 1
presence_events_total{result="applied",type="profile"} 0
presence_events_total{result="applied",type="slots"} 1
presence_events_total{result="applied",type="status"} 1
presence_events_total{result="rejected",type="_"} 0
presence_events_total{result="rejected",type="heartbeat"} 1
presence_events_total{result="rejected",type="login"} 0
presence_events_total{result="rejected",type="logout"} 0
presence_events_total{result="rejected",type="profile"} 0
presence_events_total{result="rejected",type="slots"} 0
presence_events_total{result="rejected",type="status"} 0
presence_events_total{result="stale",type="heartbeat"} 0
presence_events_total{result="stale",type="login"} 0
presence_events_total{result="stale",type="logout"} 0
presence_events_total{result="stale",type="profile"} 1
presence_events_total{result="stale",type="slots"} 0
presence_events_total{result="stale",type="status"} 0
# HELP presence_deadletters_total Rejected events copied to the dead-letter stream.
# TYPE presence_deadletters_total counter
presence_deadletters_total 1
# HELP presence_stream_applied_sequence Last stream sequence whose effect is visible to queries.
# TYPE presence_stream_applied_sequence gauge
presence_stream_applied_sequence 6
# HELP presence_stream_pending_messages Stream messages not yet applied, as of the last message read.
# TYPE presence_stream_pending_messages gauge
presence_stream_pending_messages 0
# HELP presence_nats_reconnects_total Times the connection to NATS was re-established after a loss.
# TYPE presence_nats_reconnects_total counter
presence_nats_reconnects_total 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected),
		"presence_events_total", "presence_deadletters_total", "presence_stream_applied_sequence",
		"presence_stream_pending_messages", "presence_nats_reconnects_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "presence_apply_duration_seconds"); n != 1 {
		t.Errorf("apply histogram: %d series", n)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %+v", err, problems)
	}
}

// badMessages are the messages of contract section 1.4, each with the
// dead-letter subject, the field its Presence-Error must name and its type
// label.
var badMessages = []struct {
	name, subject, payload string
	dlSubject, field, typ  string
}{
	{"unknown type", "presence.acme.dance", `{"userId":"1"}`, "deadletter.presence.acme._", "type", "_"},
	{"type in capitals", "presence.acme.LOGIN", `{"userId":"1"}`, "deadletter.presence.acme._", "type", "_"},
	{"bad tenant chars", "presence.ac$me.login", `{"userId":"1"}`, "deadletter.presence._.login", "tenantId", "login"},
	{"tenant too long", "presence." + strings.Repeat("t", 65) + ".status", `{"userId":"1"}`, "deadletter.presence._.status", "tenantId", "status"},
	{"bad tenant and type", "presence.a+b.nope", `{}`, "deadletter.presence._._", "tenantId", "_"},
	{"bad JSON", "presence.acme.login", `{"userId":"1"`, "deadletter.presence.acme.login", "json", "login"},
	{"not an object", "presence.acme.login", `["userId"]`, "deadletter.presence.acme.login", "json", "login"},
	{"empty body", "presence.acme.logout", ``, "deadletter.presence.acme.logout", "json", "logout"},
	{"missing userId", "presence.acme.profile", `{"role":"bot"}`, "deadletter.presence.acme.profile", "userId", "profile"},
	{"oversized userId", "presence.acme.profile", `{"userId":"` + strings.Repeat("u", 129) + `"}`, "deadletter.presence.acme.profile", "userId", "profile"},
	{"bad role", "presence.acme.profile", `{"userId":"1","role":"king"}`, "deadletter.presence.acme.profile", "role", "profile"},
	{"bad chat status", "presence.acme.status", `{"userId":"1","chat":{"availability":"AWAY"}}`, "deadletter.presence.acme.status", "chat.availability", "status"},
	{"slots out of range", "presence.acme.slots", `{"userId":"1","chat":{"maxSlots":1001}}`, "deadletter.presence.acme.slots", "chat.maxSlots", "slots"},
	{"fractional slots", "presence.acme.slots", `{"userId":"1","chat":{"currentSlots":1.5}}`, "deadletter.presence.acme.slots", "chat.currentSlots", "slots"},
	{"oversized list", "presence.acme.profile", `{"userId":"1","groupIds":[` + strings.Repeat(`"g",`, 256) + `"g"]}`, "deadletter.presence.acme.profile", "groupIds", "profile"},
	{"bad ts", "presence.acme.heartbeat", `{"userId":"1","ts":"yesterday"}`, "deadletter.presence.acme.heartbeat", "ts", "heartbeat"},
	{"ts in the future", "presence.acme.heartbeat", `{"userId":"1","ts":"2999-01-01T00:00:00Z"}`, "deadletter.presence.acme.heartbeat", "ts", "heartbeat"},
}

// TestBadMessages checks that each bad message is rejected, counted and
// dead-lettered once with the right subject and headers, that the engine goes
// on, and that a replay of the whole stream, long after the dead-letter
// stream's duplicate window, writes no dead letter again.
func TestBadMessages(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js, _ := jetstream.New(nc)

	// The operator made the dead-letter stream with the shortest duplicate
	// window JetStream allows, so that only the ingester's own bookkeeping
	// can keep the replay from writing dead letters twice. It also captures
	// "probe", for the test to tell when the window has passed.
	ctx := context.Background()
	dlCfg := jetstream.StreamConfig{
		Name:       "PRESENCE_DEADLETTER",
		Subjects:   []string{"deadletter.presence.>", "probe"},
		Storage:    jetstream.MemoryStorage,
		Duplicates: 100 * time.Millisecond,
	}
	if _, err := js.CreateStream(ctx, dlCfg); err != nil {
		t.Fatal(err)
	}

	logs := &testenv.Buffer{}
	r := startIngester(t, ingest.Config{Conn: nc, Logger: bufferLogger(logs)})
	testenv.WaitFor(t, "the streams", r.Ready)

	// Each bad message is followed by a good one: a bad message must not
	// stop the engine.
	var wantSeq []uint64
	for k, m := range badMessages {
		publish(t, nc, m.subject, m.payload)
		publish(t, nc, "presence.acme.heartbeat", fmt.Sprintf(`{"userId":"good-%d"}`, k))
		wantSeq = append(wantSeq, uint64(2*k+1))
	}
	last := uint64(2 * len(badMessages))
	waitStored(t, js, "PRESENCE", last)
	created := streamCreated(t, js, "PRESENCE").UTC()

	checkDeadLetters := func(t *testing.T) {
		t.Helper()
		var dls []*jetstream.RawStreamMsg
		for _, m := range streamMsgs(t, js, "PRESENCE_DEADLETTER") {
			if m.Subject != "probe" {
				dls = append(dls, m)
			}
		}
		if len(dls) != len(badMessages) {
			t.Fatalf("%d dead letters, want %d", len(dls), len(badMessages))
		}
		for k, m := range badMessages {
			dl := dls[k]
			if dl.Subject != m.dlSubject {
				t.Errorf("%s: dead letter on %s, want %s", m.name, dl.Subject, m.dlSubject)
			}
			if got := dl.Header.Get(ingest.HeaderSubject); got != m.subject {
				t.Errorf("%s: %s %q, want %q", m.name, ingest.HeaderSubject, got, m.subject)
			}
			if got := dl.Header.Get(ingest.HeaderSequence); got != strconv.FormatUint(wantSeq[k], 10) {
				t.Errorf("%s: %s %q, want %d", m.name, ingest.HeaderSequence, got, wantSeq[k])
			}
			if got, want := dl.Header.Get(ingest.HeaderStreamCreated), created.Format(time.RFC3339Nano); got != want {
				t.Errorf("%s: %s %q, want the stream's creation time %q", m.name, ingest.HeaderStreamCreated, got, want)
			}
			if got := dl.Header.Get(ingest.HeaderError); !strings.HasPrefix(got, "presence: "+m.field+":") {
				t.Errorf("%s: %s %q, want the reason for %s", m.name, ingest.HeaderError, got, m.field)
			}
			if string(dl.Data) != m.payload {
				t.Errorf("%s: body %q, want it unchanged %q", m.name, dl.Data, m.payload)
			}
		}
	}
	wantRejected := map[string]float64{}
	for _, m := range badMessages {
		wantRejected[m.typ]++
	}
	checkCounts := func(t *testing.T, r *runner) {
		t.Helper()
		recs := r.rec.records()
		if len(recs) != len(badMessages) {
			t.Fatalf("applied %d events, want the %d good ones", len(recs), len(badMessages))
		}
		for k, rec := range recs {
			if rec.Ev.UserID != fmt.Sprintf("good-%d", k) {
				t.Errorf("applied event %d is %q", k, rec.Ev.UserID)
			}
		}
		for typ, want := range wantRejected {
			c, err := eventsCounter(r.reg, typ, "rejected")
			if err != nil || c != want {
				t.Errorf("events_total{type=%q,result=rejected} = %v (%v), want %v", typ, c, err, want)
			}
		}
		if c, _ := eventsCounter(r.reg, "heartbeat", "applied"); c != float64(len(badMessages)) {
			t.Errorf("events_total{type=heartbeat,result=applied} = %v, want %d", c, len(badMessages))
		}
	}

	r.waitApplied(t, last)
	checkDeadLetters(t)
	checkCounts(t, r)
	if got := counterValue(t, r.reg, "presence_deadletters_total"); got != float64(len(badMessages)) {
		t.Errorf("deadletters_total %v, want %d", got, len(badMessages))
	}
	// The burst of rejections is logged with a reason, at most one line per
	// second, and the lines held back are counted.
	if n := strings.Count(logs.String(), "ingest: event rejected"); n < 1 || n > 3 {
		t.Errorf("%d rejection log lines for a burst of %d, want rate-limited: %s", n, len(badMessages), logs)
	}
	if !strings.Contains(logs.String(), "reason=") {
		t.Errorf("rejection logged without its reason: %s", logs)
	}
	r.stop(t)

	// Wait for the duplicate window to pass: a message id published after
	// every dead letter is no longer known as a duplicate.
	publishProbe := func() bool {
		ack, err := js.Publish(ctx, "probe", nil, jetstream.WithMsgID("probe"))
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		return !ack.Duplicate
	}
	publishProbe()
	testenv.WaitFor(t, "the duplicate window to pass", publishProbe)

	// Replay from the first message, as after a restart without snapshot.
	r2 := startIngester(t, ingest.Config{Conn: nc, StartSeq: 1})
	r2.waitApplied(t, last)
	checkDeadLetters(t)
	checkCounts(t, r2)
	if got := counterValue(t, r2.reg, "presence_deadletters_total"); got != 0 {
		t.Errorf("the replay wrote %v dead letters, want 0", got)
	}
	// The operator's dead-letter stream is as they made it.
	s, err := js.Stream(ctx, "PRESENCE_DEADLETTER")
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; !slices.Equal(c.Subjects, dlCfg.Subjects) || c.Duplicates != dlCfg.Duplicates {
		t.Errorf("the dead-letter stream was changed: %+v", c)
	}
}

// TestExistingStreams checks that streams an operator made are used as they
// are when they capture what is needed: here a broader one, which lets in
// subjects of too few and too many tokens, rejected as bad subjects. A stream
// that does not capture the events is an error.
func TestExistingStreams(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"presence.>"}}); err != nil {
		t.Fatal(err)
	}
	r := startIngester(t, ingest.Config{Conn: nc, Stream: "EVENTS"})
	publish(t, nc, "presence.acme", `{"userId":"1"}`)
	publish(t, nc, "presence.acme.login.extra", `{"userId":"1"}`)
	publish(t, nc, "presence.acme.login", `{"userId":"1"}`)
	r.waitApplied(t, 3)
	if n := r.rec.len(); n != 1 {
		t.Errorf("applied %d events, want 1", n)
	}
	dls := streamMsgs(t, js, "EVENTS_DEADLETTER")
	if len(dls) != 2 || dls[0].Subject != "deadletter.presence.acme._" || dls[1].Subject != "deadletter.presence.acme._" {
		t.Errorf("dead letters %+v", dls)
	}
	if c, _ := eventsCounter(r.reg, "_", "rejected"); c != 2 {
		t.Errorf("events_total{type=_,result=rejected} = %v, want 2", c)
	}
	s, _ := js.Stream(ctx, "EVENTS")
	if got := s.CachedInfo().Config.Subjects; !slices.Equal(got, []string{"presence.>"}) {
		t.Errorf("stream subjects changed to %v", got)
	}

	// A stream that captures one tenant only cannot feed the engine.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "NARROW", Subjects: []string{"other.acme.*"}}); err != nil {
		t.Fatal(err)
	}
	ing, err := ingest.New(ingest.Config{Conn: nc, Applier: &recorder{}, Stream: "NARROW", Prefix: "other"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, testenv.WaitTimeout)
	defer cancel()
	if err := ing.Run(rctx); !errors.Is(err, ingest.ErrStreamSubjects) || !strings.Contains(err.Error(), "other.*.*") {
		t.Errorf("Run on a narrow stream: %v, want ErrStreamSubjects naming other.*.*", err)
	}
}

// TestReadiness checks that Ready turns true only once the backlog stored
// before Run is applied, and that cancelling Run lets the message in hand
// finish.
func TestReadiness(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js, _ := jetstream.New(nc)

	// Let the ingester create the stream, then stop it, publish a backlog
	// and start again.
	r := startIngester(t, ingest.Config{Conn: nc})
	testenv.WaitFor(t, "readiness on an empty stream", r.Ready)
	r.stop(t)
	const backlog = 300
	for k := range backlog {
		publish(t, nc, "presence.acme.heartbeat", fmt.Sprintf(`{"userId":"u%d"}`, k))
	}
	waitStored(t, js, "PRESENCE", backlog)

	rec := &recorder{gate: make(chan struct{})}
	r = startIngester(t, ingest.Config{Conn: nc, Applier: rec})
	// Watch Ready from the outside while the backlog is applied: when it is
	// first seen true, everything before must be applied.
	var early atomic.Bool
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for !r.Ready() {
			runtime.Gosched()
		}
		if r.AppliedSeq() < backlog {
			early.Store(true)
		}
	}()
	testenv.WaitFor(t, "the backlog to be seen", func() bool { return r.Pending() > 0 })
	if r.Ready() {
		t.Fatal("ready before applying the backlog")
	}
	close(rec.gate)
	<-watched
	if early.Load() {
		t.Error("Ready turned true before the backlog was applied")
	}
	if got := r.AppliedSeq(); got != backlog {
		t.Errorf("AppliedSeq %d, want %d", got, backlog)
	}

	// Cancel while Apply holds a message: Run returns nil once it is done,
	// and it counts as applied.
	hold := &recorder{gate: make(chan struct{})}
	r.stop(t)
	r = startIngester(t, ingest.Config{Conn: nc, Applier: hold, StartSeq: backlog + 1})
	publish(t, nc, "presence.acme.login", `{"userId":"late"}`)
	testenv.WaitFor(t, "Apply to hold the message", func() bool { return hold.entered.Load() == 1 })
	r.cancel()
	close(hold.gate)
	r.stop(t)
	if hold.len() != 1 || r.AppliedSeq() != backlog+1 {
		t.Errorf("in-flight message: %d applied, AppliedSeq %d, want 1 and %d", hold.len(), r.AppliedSeq(), backlog+1)
	}
}

// TestServerRestart restarts the NATS server in the middle of a stream of
// events and checks that every event is applied once, in order.
func TestServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv, url := startServer(t, dir, "127.0.0.1:-1")
	listen := strings.TrimPrefix(url, "nats://")

	const total = 1500
	reg := prometheus.NewPedanticRegistry()
	nc := connect(t, url, reg)
	// Apply holds one event in the middle while the server goes away, so
	// that the ingester is cut off with a message in hand and more in its
	// consumer's buffer.
	rec := &recorder{gate: make(chan struct{}), gateAt: total / 3}
	r := startIngester(t, ingest.Config{Conn: nc, Registerer: reg, Applier: rec})
	testenv.WaitFor(t, "readiness", r.Ready)

	// The publisher waits for each acknowledgement and retries through the
	// outage; the message id keeps a retry whose first try was stored from
	// storing the event twice.
	pub := connect(t, url, nil, nats.ReconnectWait(20*time.Millisecond))
	pjs, _ := jetstream.New(pub)
	// It publishes half of the events, then the rest once the server is
	// going down: through the outage and after it.
	halfway, shutdown := make(chan struct{}), make(chan struct{})
	pubDone := make(chan error, 1)
	go func() {
		for k := range total {
			if k == total/2 {
				close(halfway)
				<-shutdown
			}
			payload := fmt.Appendf(nil, `{"userId":"u%d"}`, k)
			deadline := time.Now().Add(testenv.WaitTimeout)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, err := pjs.Publish(ctx, "presence.acme.heartbeat", payload, jetstream.WithMsgID(strconv.Itoa(k)))
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					pubDone <- fmt.Errorf("event %d: %w", k, err)
					return
				}
			}
		}
		pubDone <- nil
	}()

	select {
	case <-halfway:
	case err := <-pubDone:
		t.Fatalf("publisher: %v", err)
	case <-time.After(testenv.WaitTimeout):
		t.Fatal("the publisher is stuck")
	}
	testenv.WaitFor(t, "Apply to hold an event", func() bool { return rec.entered.Load() > total/3 })
	srv.Shutdown()
	close(shutdown)
	testenv.WaitFor(t, "not ready while cut off", func() bool { return !r.Ready() })
	close(rec.gate)
	startServer(t, dir, listen)

	if err := <-pubDone; err != nil {
		t.Fatalf("publisher: %v", err)
	}
	r.waitApplied(t, total)
	testenv.WaitFor(t, "ready again", r.Ready)

	recs := r.rec.records()
	if len(recs) != total {
		t.Errorf("applied %d events, want %d", len(recs), total)
	}
	for k, rec := range recs {
		if want := fmt.Sprintf("u%d", k); rec.Ev.UserID != want {
			t.Fatalf("event %d is %s, want %s: lost or applied twice", k, rec.Ev.UserID, want)
		}
	}
	if got := r.AppliedSeq(); got != total {
		t.Errorf("AppliedSeq %d, want %d", got, total)
	}
	if got := counterValue(t, reg, "presence_nats_reconnects_total"); got < 1 {
		t.Errorf("reconnects_total %v, want at least 1", got)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %+v", err, problems)
	}
}

// TestServerConfigFile runs the embedded server with a configuration file in
// which a tenant's desk may publish only its own events.
func TestServerConfigFile(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "nats.conf")
	err := os.WriteFile(conf, []byte(`
accounts {
  PRESENCE {
    jetstream: enabled
    users: [
      {user: engine, password: engine-secret}
      {user: acme, password: acme-secret, permissions: {publish: ["presence.acme.>"], subscribe: ["_INBOX.>"]}}
    ]
  }
}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	srv, url, err := ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: t.TempDir(), ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	nc := connect(t, url, nil, nats.UserInfo("engine", "engine-secret"))
	r := startIngester(t, ingest.Config{Conn: nc})
	testenv.WaitFor(t, "readiness", r.Ready)

	var denied sync.Once
	deniedCh := make(chan struct{})
	desk, err := nats.Connect(url, nats.UserInfo("acme", "acme-secret"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				denied.Do(func() { close(deniedCh) })
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer desk.Close()
	publish(t, desk, "presence.other.login", `{"userId":"intruder"}`)
	publish(t, desk, "presence.acme.login", `{"userId":"desk"}`)
	select {
	case <-deniedCh:
	case <-time.After(testenv.WaitTimeout):
		t.Fatal("publishing to another tenant was not denied")
	}
	r.waitApplied(t, 1)
	recs := r.rec.records()
	if len(recs) != 1 || recs[0].Tenant != "acme" || recs[0].Ev.UserID != "desk" {
		t.Errorf("applied %+v, want only acme's event", recs)
	}
}

// TestAccountWithoutJetStream checks that Run reports at once an account the
// configuration file left without JetStream, rather than retrying forever.
func TestAccountWithoutJetStream(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte(`accounts { A { users: [{user: e, password: p}] } }`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, url, err := ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: t.TempDir(), ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc := connect(t, url, nil, nats.UserInfo("e", "p"))
	ing, err := ingest.New(ingest.Config{Conn: nc, Applier: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testenv.WaitTimeout)
	defer cancel()
	if err := ing.Run(ctx); err == nil || !strings.Contains(err.Error(), "not enabled for account") {
		t.Errorf("Run: %v, want the account's lack of JetStream", err)
	}
}

// eventsCounter reads presence_events_total{type,result} from reg.
func eventsCounter(reg prometheus.Gatherer, typ, result string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != "presence_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["type"] == typ && labels["result"] == result {
				return m.GetCounter().GetValue(), nil
			}
		}
	}
	return 0, fmt.Errorf("no presence_events_total{type=%q,result=%q}", typ, result)
}

// counterValue reads the counter without labels called name from reg.
func counterValue(t testing.TB, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestStartBeforeServer starts the ingester while no NATS server listens, as
// with an external server that is down: it waits, then catches up.
func TestStartBeforeServer(t *testing.T) {
	dir := t.TempDir()
	srv, url := startServer(t, dir, "127.0.0.1:-1")
	srv.Shutdown()

	nc, err := ingest.Connect(url, nil, nil, nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatalf("Connect with no server: %v, want a connection that retries", err)
	}
	t.Cleanup(nc.Close)
	r := startIngester(t, ingest.Config{Conn: nc})
	if r.Ready() {
		t.Fatal("ready without a server")
	}
	startServer(t, dir, strings.TrimPrefix(url, "nats://"))
	testenv.WaitFor(t, "readiness once the server is up", r.Ready)
	publish(t, nc, "presence.acme.login", `{"userId":"1"}`)
	r.waitApplied(t, 1)
}

// TestConnClosed checks that Run gives up when the caller closes the
// connection under it.
func TestConnClosed(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	ing, err := ingest.New(ingest.Config{Conn: nc, Applier: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ing.Run(context.Background()) }()
	testenv.WaitFor(t, "readiness", ing.Ready)
	if err := ing.Run(context.Background()); !errors.Is(err, ingest.ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
	nc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ingest.ErrConnClosed) {
			t.Errorf("Run: %v, want ErrConnClosed", err)
		}
	case <-time.After(testenv.WaitTimeout):
		t.Fatal("Run went on after the connection closed")
	}
}

// TestReplicas runs an ingester with Replicas 3 on a 3-node cluster: the
// streams and the bucket it creates have three replicas, and it reads and
// dead-letters as on one server.
func TestReplicas(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	nc := connect(t, c.URLs(), nil)
	js, _ := jetstream.New(nc)
	r := startIngester(t, ingest.Config{Conn: nc, Replicas: 3})
	testenv.WaitFor(t, "readiness", r.Ready)
	ctx := context.Background()
	for _, m := range []wire{{"presence.acme.login", `{"userId":"1"}`}, {"presence.acme.dance", `{"userId":"2"}`}} {
		if _, err := js.Publish(ctx, m.subject, []byte(m.body)); err != nil {
			t.Fatal(err)
		}
	}
	r.waitApplied(t, 2)
	for _, name := range []string{"PRESENCE", "PRESENCE_DEADLETTER", "KV_PRESENCE" + ingest.MarksSuffix} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if n := s.CachedInfo().Config.Replicas; n != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, n)
		}
	}
	if n := len(streamMsgs(t, js, "PRESENCE_DEADLETTER")); n != 1 || r.rec.len() != 1 {
		t.Errorf("%d dead letters and %d events applied, want 1 and 1", n, r.rec.len())
	}
}

// TestClusterServers starts three embedded servers as one NATS cluster and
// checks that a stream of three replicas keeps every acknowledged message
// while a node is down, and after it is back.
func TestClusterServers(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	// A publish in flight when a node stops (the one the client is on, or
	// the stream's leader, until another is elected) gets no answer: the
	// publisher retries, and the message id keeps a retry of a stored
	// message from storing it twice.
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			deadline := time.Now().Add(testenv.WaitTimeout)
			for {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "r3.x", []byte(strconv.Itoa(i)), jetstream.WithMsgID(strconv.Itoa(i)))
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("message %d: %v", i, err)
				}
			}
		}
	}
	publish(0, 100)
	down := c.Nodes()[0]
	c.Stop(down)
	publish(100, 200)
	c.Restart(down)
	publish(200, 300)
	s, err := js.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 300 {
		t.Fatalf("the stream holds %d messages, want 300", n)
	}
	if got := len(s.CachedInfo().Cluster.Replicas) + 1; got != 3 {
		t.Fatalf("%d replicas", got)
	}
}

// TestNodeLostWhileReading reads a stream of 4 partitions and 3 replicas
// on a 3-node cluster, one ingester per partition, each on a connection of
// its own, stops a node, publishes on, and checks that every ingester
// applies every message of its partition, once.
func TestNodeLostWhileReading(t *testing.T) {
	const partitions, tenants = 4, 16
	c := testenv.StartCluster(t, 3)
	pubConn := connect(t, c.URLs(), nil)
	js, _ := jetstream.New(pubConn)
	ctx := context.Background()
	if _, err := ingest.Prepare(ctx, js, ingest.Config{Partitions: partitions, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	var runners []*runner
	nc := connect(t, c.URLs(), nil)
	for p := range partitions {
		runners = append(runners, startIngester(t, ingest.Config{Conn: nc, Partitions: partitions, Partition: p, Replicas: 3}))
	}
	sent := make([]int, partitions)
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			tenant := fmt.Sprint("t", i%tenants)
			deadline := time.Now().Add(testenv.WaitTimeout)
			for {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "presence."+tenant+".login", []byte(fmt.Sprintf(`{"userId":"u%d"}`, i)),
					jetstream.WithMsgID(strconv.Itoa(i)))
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			sent[presence.Partition(tenant, partitions)]++
		}
	}
	caughtUp := func(what string) {
		t.Helper()
		start := time.Now()
		testenv.WaitFor(t, what, func() bool {
			for p, r := range runners {
				if r.rec.len() != sent[p] {
					return false
				}
			}
			return true
		})
		t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
	}
	publish(0, 200)
	caughtUp("every partition applied")
	c.Stop(c.Nodes()[0])
	publish(200, 400)
	caughtUp("every partition applied with a node down")
	c.Restart(c.Nodes()[0])
	publish(400, 600)
	caughtUp("every partition applied with the node back")
	for p, r := range runners {
		users := map[string]bool{}
		for _, rec := range r.rec.records() {
			if users[rec.Ev.UserID] {
				t.Fatalf("partition %d applied %s twice", p, rec.Ev.UserID)
			}
			users[rec.Ev.UserID] = true
		}
	}
}
