package service_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// TestStreamIsTheRecord publishes a shuffled load with duplicates, events
// without ts and bad messages to one instance, into an operator's stream
// that keeps fewer messages than are published (discard new: the last ones
// are refused), then starts a second, fresh instance on the same NATS
// server, which reads the whole stream. Both must give the stream's record
// (contract section 1): every counter equal to what the stream's messages
// give in stream order (read back from the stream), and every answer equal
// to the oracle's over those messages.
func TestStreamIsTheRecord(t *testing.T) {
	natsURL := startNATSServer(t)
	const keeps = 1300 // of the 1,509 messages published
	createStream(t, natsURL, jetstream.StreamConfig{Name: ingest.DefaultStream, Subjects: []string{"presence.*.*"},
		MaxMsgs: keeps, Discard: jetstream.DiscardNew})
	cfg := testConfig(t.TempDir())
	cfg.NATSURL = natsURL
	live := start(t, cfg)

	r := rand.New(rand.NewPCG(21, 22))
	const users = 60
	events := oracle.Events(r, e2eTenants, users, 10, 300)
	for i := range events {
		if r.IntN(4) == 0 {
			events[i].Ev.Fields &^= presence.HasTS // timed by the stream
		}
	}
	bad := badMessages()
	nc := natsConnect(t, natsURL)
	publishMixed(t, nc, r, events, bad)
	if published := len(events) + len(bad); published <= keeps {
		t.Fatalf("%d messages published: the stream refuses none of them", published)
	}
	total := keeps
	testenv.WaitFor(t, "every stored message to be counted", func() bool { return eventsCounted(t, live.HTTPAddr()) == total })

	record, rejected := readRecord(t, natsURL, total)
	want := map[string]float64{}
	for typ, n := range rejected {
		want[`presence_events_total{result="rejected",type="`+typ+`"}`] = float64(n)
	}
	for i, res := range oracle.Results(record) {
		want[`presence_events_total{result="`+res.String()+`",type="`+record[i].Ev.Type.String()+`"}`]++
	}
	truth := oracle.State(record)
	for _, tn := range e2eTenants {
		ind := oracle.Query(truth[tn], &engine.Filter{})
		want[`presence_connected_users{tenant="`+tn+`"}`] = float64(ind.Connected)
		want[`presence_in_production_users{tenant="`+tn+`"}`] = float64(ind.InProduction)
		want[`presence_chat_slots{kind="max",tenant="`+tn+`"}`] = float64(ind.MaxSlots)
		want[`presence_chat_slots{kind="current",tenant="`+tn+`"}`] = float64(ind.CurrentSlots)
	}
	want[`presence_stream_applied_sequence`] = float64(total)
	if want[`presence_events_total{result="stale",type="status"}`]+want[`presence_events_total{result="stale",type="login"}`] == 0 {
		t.Fatal("no stale event in the load: the counts prove little")
	}

	cfg2 := testConfig(t.TempDir())
	cfg2.NATSURL = natsURL
	replay := start(t, cfg2)
	for name, inst := range map[string]string{"live": live.HTTPAddr(), "replay": replay.HTTPAddr()} {
		got := scrape(t, inst)
		for series, w := range want {
			if g, ok := got[series]; !ok && w != 0 || g != w {
				t.Errorf("%s: %s = %v, want %v (stream order)", name, series, g, w)
			}
		}
		// No other presence_events_total series has a count.
		for series, g := range got {
			if _, ok := want[series]; !ok && strings.HasPrefix(series, "presence_events_total") && g != 0 {
				t.Errorf("%s: %s = %v, want 0", name, series, g)
			}
		}
	}
	for i := range 150 {
		tn := e2eTenants[i%len(e2eTenants)]
		f := oracle.RandomFilter(r, oracle.Class(i%3), users)
		header := map[string]string{"X-Tenant-Id": tn}
		wantInd := oracle.Answer(truth[tn], f)
		for name, addr := range map[string]string{"live": live.HTTPAddr(), "replay": replay.HTTPAddr()} {
			if got := indicator(t, addr, "", header, f); got != wantInd {
				t.Fatalf("%s: tenant %s filter %+v:\n got %+v\nwant %+v", name, tn, *f, got, wantInd)
			}
		}
	}
}

// createStream creates a stream as an operator would before presenced runs.
func createStream(t *testing.T, url string, cfg jetstream.StreamConfig) {
	t.Helper()
	js, err := jetstream.New(natsConnect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// readRecord reads the event stream's n messages in stream order as the
// contract defines them: the valid events with their ts resolved (the stored
// time when absent), and the count of bad messages by type label.
func readRecord(t *testing.T, url string, n int) ([]oracle.Delivered, map[string]int) {
	t.Helper()
	nc := natsConnect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, ingest.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var record []oracle.Delivered
	rejected := map[string]int{}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for msg := range batch.Messages() {
		seen++
		md, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		tenant, typ, err := presence.ParseSubject(ingest.DefaultPrefix, msg.Subject())
		var ev presence.Event
		if err == nil {
			ev.Type = typ
			err = presence.Decode(msg.Data(), &ev)
		}
		if err == nil {
			err = ev.ResolveTime(md.Timestamp, ingest.DefaultMaxClockSkew)
		}
		if err != nil {
			rejected[typ.String()]++
			continue
		}
		record = append(record, oracle.Delivered{Tenant: tenant, Ev: ev})
	}
	if seen != n {
		t.Fatalf("read %d messages of the stream, want %d", seen, n)
	}
	return record, rejected
}

// scrape returns every series of /metrics whose name starts with presence_,
// by its name and labels as exposed.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "presence_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no presence_ series on /metrics")
	}
	return out
}
