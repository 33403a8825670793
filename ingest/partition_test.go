package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// partitionedTenants fall in every one of 4 partitions (cyberdyne 0,
// initech and wayne 1, globex and hooli 2, acme and tyrell 3) and of 2.
var partitionedTenants = []string{"acme", "globex", "initech", "cyberdyne", "hooli", "wayne", "tyrell"}

// metricSum sums the series of the counter called name whose labels include
// match, over every partition.
func metricSum(t testing.TB, reg prometheus.Gatherer, name string, match map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if labels[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// streamConfig returns the configuration of the stream called name.
func streamConfig(t testing.TB, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

// TestPartitionedStream checks the streams Prepare creates: with 4
// partitions, <prefix>.*.* transformed to carry the partition and the count
// in the metadata; with 1, no transform and the count 1.
func TestPartitionedStream(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	js := jsOf(t, url)
	ctx := context.Background()
	info, err := ingest.Prepare(ctx, js, ingest.Config{Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	if info.Partitions != 4 || !info.Created.Equal(streamCreated(t, js, "PRESENCE")) {
		t.Errorf("Prepare: %+v, want 4 partitions of the stream created", info)
	}
	c := streamConfig(t, js, "PRESENCE")
	want := jetstream.SubjectTransformConfig{Source: "presence.*.*",
		Destination: "presence.{{partition(4,1)}}.{{wildcard(1)}}.{{wildcard(2)}}"}
	if len(c.Subjects) != 1 || c.Subjects[0] != "presence.*.*" || c.SubjectTransform == nil || *c.SubjectTransform != want ||
		c.Metadata[ingest.MetadataPartitions] != "4" {
		t.Errorf("stream created with subjects %v, transform %+v, metadata %v", c.Subjects, c.SubjectTransform, c.Metadata)
	}
	// Prepared again with the same count: accepted as it is.
	if _, err := ingest.Prepare(ctx, js, ingest.Config{Partitions: 4}); err != nil {
		t.Errorf("Prepare again: %v", err)
	}

	info, err = ingest.Prepare(ctx, js, ingest.Config{Stream: "ONE", Prefix: "one"})
	if err != nil {
		t.Fatal(err)
	}
	if c := streamConfig(t, js, "ONE"); info.Partitions != 1 || c.SubjectTransform != nil || c.Metadata[ingest.MetadataPartitions] != "1" {
		t.Errorf("one partition: %+v, transform %+v, metadata %v", info, c.SubjectTransform, c.Metadata)
	}
}

// TestPartitionsRefused checks that a stream of another partition count, or
// one that does not partition its subjects as its count says, is refused
// with ErrPartitions, by Prepare and by Run, naming what is wrong; and that a
// stream from before partitions (no metadata) is one partition.
func TestPartitionsRefused(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js := jsOf(t, url)
	ctx := context.Background()
	create := func(cfg jetstream.StreamConfig) {
		t.Helper()
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	// Streams may not overlap: each has its prefix, its name in lower case.
	if _, err := ingest.Prepare(ctx, js, ingest.Config{Stream: "FOUR", Prefix: "four", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	four := map[string]string{ingest.MetadataPartitions: "4"}
	transform := func(prefix, partition string) *jetstream.SubjectTransformConfig {
		return &jetstream.SubjectTransformConfig{Source: prefix + ".*.*",
			Destination: prefix + ".{{" + partition + "}}.{{wildcard(1)}}.{{wildcard(2)}}"}
	}
	create(jetstream.StreamConfig{Name: "OLD", Subjects: []string{"old.*.*"}})
	create(jetstream.StreamConfig{Name: "NOTRANSFORM", Subjects: []string{"notransform.*.*"}, Metadata: four})
	create(jetstream.StreamConfig{Name: "OTHERCOUNT", Subjects: []string{"othercount.*.*"}, Metadata: four,
		SubjectTransform: transform("othercount", "partition(8,1)")})
	create(jetstream.StreamConfig{Name: "BROAD", Subjects: []string{"broad.>"}, Metadata: four,
		SubjectTransform: transform("broad", "partition(4,1)")})
	create(jetstream.StreamConfig{Name: "SPACED", Subjects: []string{"spaced.*.*"}, Metadata: four,
		SubjectTransform: &jetstream.SubjectTransformConfig{Source: "spaced.*.*",
			Destination: "spaced.{{ partition(4, 1) }}.{{ wildcard(1) }}.{{ wildcard(2) }}"}})
	create(jetstream.StreamConfig{Name: "GARBLED", Subjects: []string{"garbled.*.*"},
		Metadata: map[string]string{ingest.MetadataPartitions: "four"}})

	tests := []struct {
		stream     string
		partitions int
		want       []string // in the error; none: accepted
	}{
		{"FOUR", 4, nil},
		{"FOUR", 8, []string{"stream FOUR", "has 4 partitions", "Partitions is 8", "set Partitions to 4"}},
		{"FOUR", 0, []string{"stream FOUR", "has 4 partitions", "Partitions is 1"}},
		{"OLD", 1, nil},
		{"OLD", 0, nil},
		{"OLD", 4, []string{"stream OLD", "has 1 partition", "created before partitions", "Partitions is 4"}},
		{"NOTRANSFORM", 4, []string{"stream NOTRANSFORM", "subject transform is none", "{{partition(4,1)}}"}},
		{"OTHERCOUNT", 4, []string{"stream OTHERCOUNT", "{{partition(8,1)}}"}},
		{"BROAD", 4, []string{"stream BROAD", "captures broad.>", "broad.*.*.*"}},
		{"SPACED", 4, nil},
		{"GARBLED", 1, []string{"stream GARBLED", `"four"`, "no partition count"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s with %d", tt.stream, tt.partitions), func(t *testing.T) {
			cfg := ingest.Config{Stream: tt.stream, Prefix: strings.ToLower(tt.stream), Partitions: tt.partitions}
			_, err := ingest.Prepare(ctx, js, cfg)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				return
			}
			if !errors.Is(err, ingest.ErrPartitions) {
				t.Fatalf("Prepare: %v, want ErrPartitions", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Prepare: %q lacks %q", err, w)
				}
			}
			// The program refuses to start: Run gives up at once.
			cfg.Conn, cfg.Applier = nc, &recorder{}
			ing, err := ingest.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, testenv.WaitTimeout)
			defer cancel()
			if err := ing.Run(rctx); !errors.Is(err, ingest.ErrPartitions) {
				t.Errorf("Run: %v, want ErrPartitions", err)
			}
		})
	}
}

// TestPartitionReaders reads the same events, good and bad, from a stream
// of 4 partitions, with one ingester (and engine) per partition, and from a
// stream of 1 with one ingester: the four hold together exactly the state of
// the one, which is the oracle's, each tenant in the engine of its
// partition; the stored subjects carry presence.Partition; every bad message
// is dead-lettered once with its subject as published.
func TestPartitionReaders(t *testing.T) {
	const n, users = 4, 15
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js := jsOf(t, url)
	ctx := context.Background()
	if _, err := ingest.Prepare(ctx, js, ingest.Config{Partitions: n}); err != nil {
		t.Fatal(err)
	}
	if _, err := ingest.Prepare(ctx, js, ingest.Config{Stream: "ONE", Prefix: "one"}); err != nil {
		t.Fatal(err)
	}
	msgs, events := mixedOf(rand.New(rand.NewPCG(8, 8)), partitionedTenants, users)
	msgs = append(msgs, wire{"presence.ac$me.login", `{"userId":"1"}`}) // a bad tenant has a partition too
	var one []wire
	for _, m := range msgs {
		one = append(one, wire{"one" + strings.TrimPrefix(m.subject, "presence"), m.body})
	}
	last := publishAll(t, js, msgs)
	publishAll(t, js, one)

	reg := prometheus.NewPedanticRegistry()
	var parts [n]*runner
	for p := range parts {
		parts[p] = startIngester(t, ingest.Config{Conn: nc, Applier: newEngine(t, nil), Partitions: n, Partition: p,
			Registerer: reg})
	}
	whole := startIngester(t, ingest.Config{Conn: nc, Applier: newEngine(t, nil), Stream: "ONE", Prefix: "one"})
	whole.waitApplied(t, last)
	// Each partition's last message, from the stored subjects, which must
	// carry the tenant token's partition.
	var partLast [n]uint64
	for _, m := range streamMsgs(t, js, "PRESENCE") {
		tokens := strings.Split(m.Subject, ".")
		p, err := strconv.Atoi(tokens[1])
		if len(tokens) != 4 || err != nil || p != presence.Partition(tokens[2], n) {
			t.Fatalf("stored subject %s: want presence.<Partition(tenant, %d)>.<tenant>.<type>", m.Subject, n)
		}
		partLast[p] = m.Sequence
	}
	for p, r := range parts {
		r.waitApplied(t, partLast[p])
		testenv.WaitFor(t, "partition "+strconv.Itoa(p)+" ready", r.Ready)
		if partLast[p] == 0 {
			t.Errorf("partition %d holds no message: pick tenants that fill every partition", p)
		}
	}

	truth := oracle.State(events)
	rnd := rand.New(rand.NewPCG(3, 4))
	users0, tenants0 := 0, 0
	for p, r := range parts {
		st := r.Applier(t).Stats()
		users0 += st.Users
		tenants0 += st.Tenants
		for _, tn := range partitionedTenants {
			if presence.Partition(tn, n) != p {
				continue
			}
			for i := range 60 {
				f := oracle.RandomFilter(rnd, oracle.Class(i%3), users)
				got, want, all := r.Applier(t).Query(tn, f), oracle.Query(truth[tn], f), whole.Applier(t).Query(tn, f)
				if got != want || all != want {
					t.Fatalf("tenant %s filter %+v:\npartition %d %+v\n     whole %+v\n    oracle %+v", tn, *f, p, got, all, want)
				}
			}
		}
	}
	if st := whole.Applier(t).Stats(); users0 != st.Users || tenants0 != st.Tenants {
		t.Errorf("the partitions hold %d users in %d tenants, the whole stream %d in %d", users0, tenants0, st.Users, st.Tenants)
	}

	bad := badSeqs(msgs)
	bad[last] = "presence.ac$me.login"
	for _, m := range streamMsgs(t, js, "PRESENCE_DEADLETTER") {
		seq, _ := strconv.ParseUint(m.Header.Get(ingest.HeaderSequence), 10, 64)
		if subject, ok := bad[seq]; !ok || m.Header.Get(ingest.HeaderSubject) != subject ||
			m.Subject != presence.DeadLetterSubject("presence", subject) {
			t.Errorf("dead letter %d of message %d: subject %s, %s %q; want the copy of %s", m.Sequence, seq, m.Subject,
				ingest.HeaderSubject, m.Header.Get(ingest.HeaderSubject), subject)
		}
		delete(bad, seq)
	}
	if len(bad) != 0 {
		t.Errorf("bad messages without a dead letter: %v", bad)
	}
	if got, want := metricSum(t, reg, "presence_events_total", map[string]string{"result": "rejected"}),
		metricSum(t, whole.reg, "presence_events_total", map[string]string{"result": "rejected"}); got != want {
		t.Errorf("the partitions rejected %v events, the whole stream %v", got, want)
	}
	for p := range n {
		if got := metricSum(t, reg, "presence_events_total", map[string]string{"partition": strconv.Itoa(p)}); got == 0 {
			t.Errorf("no events counted for partition %d", p)
		}
	}
}

// TestPartitionReadiness checks that each partition's ingester is ready once
// it has applied what its partition held when it started, not the whole
// stream: partition 0's messages all come first, partition 3 has none, and
// partition 1's applier is held back.
func TestPartitionReadiness(t *testing.T) {
	const n, each = 4, 40
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js := jsOf(t, url)
	if _, err := ingest.Prepare(context.Background(), js, ingest.Config{Partitions: n}); err != nil {
		t.Fatal(err)
	}
	var msgs []wire
	for _, tn := range []string{"cyberdyne", "initech", "globex"} { // partitions 0, 1, 2
		for k := range each {
			msgs = append(msgs, wire{"presence." + tn + ".heartbeat", fmt.Sprintf(`{"userId":"u%d"}`, k)})
		}
	}
	last := publishAll(t, js, msgs)
	partLast := [n]uint64{each, 2 * each, 3 * each, 0}

	var parts [n]*runner
	held := &recorder{gate: make(chan struct{})}
	for p := range parts {
		cfg := ingest.Config{Conn: nc, Partitions: n, Partition: p}
		if p == 1 {
			cfg.Applier = held
		}
		parts[p] = startIngester(t, cfg)
	}
	var early atomic.Bool
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for !parts[1].Ready() {
			runtime.Gosched()
		}
		if parts[1].AppliedSeq() < partLast[1] {
			early.Store(true)
		}
	}()
	for _, p := range []int{0, 2, 3} {
		testenv.WaitFor(t, "partition "+strconv.Itoa(p)+" ready", parts[p].Ready)
		if got := parts[p].AppliedSeq(); got != partLast[p] {
			t.Errorf("partition %d: ready at sequence %d, want its last, %d", p, got, partLast[p])
		}
	}
	testenv.WaitFor(t, "partition 1 to see its backlog", func() bool { return parts[1].Pending() > 0 })
	if parts[1].Ready() {
		t.Fatal("partition 1 ready before applying its backlog")
	}
	close(held.gate)
	<-watched
	if early.Load() {
		t.Error("partition 1 turned ready before its backlog was applied")
	}
	if got := parts[1].AppliedSeq(); got != partLast[1] || parts[1].Pending() != 0 {
		t.Errorf("partition 1: AppliedSeq %d, Pending %d; want %d, 0", got, parts[1].Pending(), partLast[1])
	}
	for p, r := range parts {
		if got := r.rec.len(); got != map[int]int{0: each, 1: each, 2: each, 3: 0}[p] {
			t.Errorf("partition %d applied %d events", p, got)
		}
	}

	// They follow the stream live, each its own partition.
	seq := publishAll(t, js, []wire{{"presence.acme.login", `{"userId":"late"}`}}) // partition 3
	parts[3].waitApplied(t, seq)
	if seq != last+1 || parts[3].rec.len() != 1 || parts[0].AppliedSeq() != partLast[0] {
		t.Errorf("after a live event of partition 3: it applied %d, partition 0 is at %d", parts[3].rec.len(), parts[0].AppliedSeq())
	}
}

// TestDeadLettersPartitions runs two instances, each reading both
// partitions of a stream (an ingester per partition, on the instance's
// connection): every bad message of either partition has exactly one dead
// letter, whether the instances read together or far apart.
func TestDeadLettersPartitions(t *testing.T) {
	const users = 20
	instance := func(t *testing.T, url string, gate chan struct{}) [2]*runner {
		t.Helper()
		nc, reg := connect(t, url, nil), prometheus.NewPedanticRegistry()
		var rs [2]*runner
		for p := range rs {
			rs[p] = startIngester(t, ingest.Config{Conn: nc, Applier: newEngine(t, gate), Partitions: 2, Partition: p,
				Registerer: reg})
		}
		return rs
	}
	ready := func(rs [2]*runner) func() bool { return func() bool { return rs[0].Ready() && rs[1].Ready() } }
	waitAll := func(t *testing.T, js jetstream.JetStream, msgs []wire, rs ...[2]*runner) {
		t.Helper()
		var partLast [2]uint64
		for _, m := range streamMsgs(t, js, "PRESENCE") {
			p, _ := strconv.Atoi(strings.Split(m.Subject, ".")[1])
			partLast[p] = m.Sequence
		}
		for _, r := range rs {
			r[0].waitApplied(t, partLast[0])
			r[1].waitApplied(t, partLast[1])
		}
	}
	check := func(t *testing.T, js jetstream.JetStream, msgs []wire, a, b [2]*runner) {
		t.Helper()
		bad := badSeqs(msgs)
		checkDeadLetters(t, js, map[time.Time]map[uint64]string{streamCreated(t, js, "PRESENCE"): bad})
		written := 0.0
		for _, rs := range [][2]*runner{a, b} {
			if got := metricSum(t, rs[0].reg, "presence_events_total", map[string]string{"result": "rejected"}); got != float64(len(bad)) {
				t.Errorf("an instance rejected %v events, want %d", got, len(bad))
			}
			written += metricSum(t, rs[0].reg, "presence_deadletters_total", nil)
		}
		if written != float64(len(bad)) {
			t.Errorf("the instances wrote %v dead letters, want %d", written, len(bad))
		}
		var per [2]int
		for seq := range bad {
			per[presence.Partition(strings.Split(msgs[seq-1].subject, ".")[1], 2)]++
		}
		if per[0] == 0 || per[1] == 0 {
			t.Fatalf("bad messages per partition %v: want some in both", per)
		}
		sameEngines(t, a[0].Applier(t).Engine, b[0].Applier(t).Engine, users, "partition 0 of the two instances")
		sameEngines(t, a[1].Applier(t).Engine, b[1].Applier(t).Engine, users, "partition 1 of the two instances")
	}

	t.Run("both reading while bad messages arrive", func(t *testing.T) {
		_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
		js := jsOf(t, url)
		a, b := instance(t, url, nil), instance(t, url, nil)
		testenv.WaitFor(t, "both instances", func() bool { return ready(a)() && ready(b)() })
		var all []wire
		r := rand.New(rand.NewPCG(6, 6))
		for range 4 {
			msgs, _ := mixed(r, users/2)
			all = append(all, msgs...)
			publishAll(t, js, msgs)
		}
		waitAll(t, js, all, a, b)
		check(t, js, all, a, b)
	})

	// Far apart, with the shortest duplicate window: only the marks keep
	// the second instance from writing again.
	t.Run("second after the first and the window", func(t *testing.T) {
		_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
		js := jsOf(t, url)
		operatorDeadLetters(t, js)
		a := instance(t, url, nil)
		testenv.WaitFor(t, "the first instance", ready(a))
		msgs, _ := mixed(rand.New(rand.NewPCG(7, 7)), users)
		publishAll(t, js, msgs)
		waitAll(t, js, msgs, a)
		waitWindow(t, js)
		b := instance(t, url, nil)
		waitAll(t, js, msgs, b)
		check(t, js, msgs, a, b)
	})

	// The second looked at the marks before the first wrote them, and
	// reaches the bad messages after the window.
	t.Run("second started earlier, reading later", func(t *testing.T) {
		_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
		js := jsOf(t, url)
		operatorDeadLetters(t, js)
		gate := make(chan struct{})
		b := instance(t, url, gate)
		testenv.WaitFor(t, "the second instance", ready(b))
		msgs, _ := mixed(rand.New(rand.NewPCG(9, 9)), users)
		// A good event of each partition first, for the gates.
		msgs = append([]wire{{"presence.globex.login", `{"userId":"first"}`}, {"presence.acme.login", `{"userId":"first"}`}}, msgs...)
		publishAll(t, js, msgs)
		testenv.WaitFor(t, "the second instance to hold a message of each partition", func() bool {
			return b[0].Applier(t).entered.Load() && b[1].Applier(t).entered.Load()
		})
		a := instance(t, url, nil)
		waitAll(t, js, msgs, a)
		waitWindow(t, js)
		close(gate)
		waitAll(t, js, msgs, b)
		check(t, js, msgs, a, b)
	})
}

// TestPartitionStreamRecreated deletes and recreates a stream of 2
// partitions under its two ingesters: each notices, though its sequences
// jump by design, empties its engine and rebuilds it from the new stream,
// and every bad message of every stream has one dead letter.
func TestPartitionStreamRecreated(t *testing.T) {
	const users = 20
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js := jsOf(t, url)
	ctx := context.Background()
	var parts [2]*runner
	for p := range parts {
		parts[p] = startIngester(t, ingest.Config{Conn: nc, Applier: newEngine(t, nil), Partitions: 2, Partition: p})
	}
	testenv.WaitFor(t, "readiness", func() bool { return parts[0].Ready() && parts[1].Ready() })
	rnd := rand.New(rand.NewPCG(10, 10))
	msgs, events := mixed(rnd, users)
	publishAll(t, js, msgs)
	wantDL := map[time.Time]map[uint64]string{streamCreated(t, js, "PRESENCE"): badSeqs(msgs)}

	for round, size := range []int{0, users / 4, 2 * users} {
		if round > 0 {
			if err := js.DeleteStream(ctx, "PRESENCE"); err != nil {
				t.Fatal(err)
			}
			if _, err := ingest.Prepare(ctx, js, ingest.Config{Partitions: 2}); err != nil {
				t.Fatal(err)
			}
			msgs, events = mixed(rnd, size)
			publishAll(t, js, msgs)
			wantDL[streamCreated(t, js, "PRESENCE")] = badSeqs(msgs)
		}
		var partLast [2]uint64
		for _, m := range streamMsgs(t, js, "PRESENCE") {
			p, _ := strconv.Atoi(strings.Split(m.Subject, ".")[1])
			partLast[p] = m.Sequence
		}
		what := fmt.Sprintf("stream %d", round+1)
		truth := oracle.State(events)
		for p, r := range parts {
			testenv.WaitFor(t, what+" applied", func() bool {
				return counterValue(t, r.reg, "presence_stream_resets_total") == float64(round) && r.AppliedSeq() == partLast[p]
			})
			rq := rand.New(rand.NewPCG(1, uint64(p)))
			for i := range 100 {
				tn := streamTenants[i%len(streamTenants)]
				if presence.Partition(tn, 2) != p {
					continue
				}
				f := oracle.RandomFilter(rq, oracle.Class(i%3), users)
				if got, want := r.Applier(t).Query(tn, f), oracle.Query(truth[tn], f); got != want {
					t.Fatalf("%s, partition %d, tenant %s, filter %+v:\n got %+v\nwant %+v", what, p, tn, *f, got, want)
				}
			}
		}
		checkDeadLetters(t, js, wantDL)
	}
}
