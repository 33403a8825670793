package service_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// Size of the crash test: 2 tenants x crashUsers users x crashPerUser
// events, plus crashDups duplicates, 500k messages in all.
const (
	crashUsers   = 10_000
	crashPerUser = 24
	crashDups    = 20_000
)

// wireMsg is one event as published: subject and JSON body.
type wireMsg struct {
	subject string
	body    []byte
}

// TestCrashRecovery kills presenced with SIGKILL while it ingests 500k
// events, starts it again on the same data dir, and checks every indicator
// against the oracle over all the events: once as the crash left the data
// dir, once with the newest snapshot corrupted on purpose.
//
// It runs the real program as a subprocess, built once. The kill happens
// while the part of the stream after 30% (and 60%) is being applied, with
// a snapshot of that point written (-snapshot-interval 1s).
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("500k events through a subprocess: skipped with -short")
	}
	bin := buildPresenced(t)

	start := time.Now()
	r := rand.New(rand.NewPCG(21, 22))
	events := oracle.Events(r, e2eTenants, crashUsers, crashPerUser, crashDups)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	msgs := wireMsgs(t, events)
	truth := oracle.State(events)
	t.Logf("%d events and their oracle made in %v", len(msgs), time.Since(start).Round(time.Millisecond))

	tokensFile, tokens := writeTokens(t, t.TempDir(), e2eTenants...)
	for _, tc := range []struct {
		name    string
		killAt  float64 // the fraction of the stream applied and snapshotted before the kill
		corrupt bool
	}{
		{"as left by the crash", 0.3, false},
		{"newest snapshot corrupted", 0.6, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testCrash(t, bin, tokensFile, tokens, msgs, truth, tc.killAt, tc.corrupt)
		})
	}
}

// wireMsgs returns events as published.
func wireMsgs(t *testing.T, events []oracle.Delivered) []wireMsg {
	t.Helper()
	msgs := make([]wireMsg, len(events))
	for i, d := range events {
		subject, err := presence.Subject("presence", d.Tenant, d.Ev.Type)
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = wireMsg{subject, d.Ev.AppendJSON(nil)}
	}
	return msgs
}

// TestSnapshotUnderLoad kills presenced while it ingests as fast as it can
// and snapshots every 200 ms, so that the snapshot the restart loads was
// encoded while events were applied (engine.Cut), and checks that the
// restart is a full replay's equal: every message after the snapshot
// counted once with the result it has in stream order, and every
// indicator and breakdown the oracle's over all the events.
func TestSnapshotUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("250k events through a subprocess: skipped with -short")
	}
	bin := buildPresenced(t)
	r := rand.New(rand.NewPCG(25, 26))
	const users = 6_000
	events := oracle.Events(r, e2eTenants, users, 20, 10_000)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	msgs := wireMsgs(t, events)
	n := uint64(len(msgs))
	tokensFile, tokens := writeTokens(t, t.TempDir(), e2eTenants...)
	dir := t.TempDir()
	args := []string{"-snapshot-interval", "200ms", "-log-level", "warn", "-rate-limit", "0", "-tokens", tokensFile}

	p := startPresenced(t, bin, dir, args...)
	p.waitReady()
	pubCtx, stopPub := context.WithCancel(context.Background())
	defer stopPub()
	pubDone := make(chan error, 1)
	go func() { pubDone <- publishPaced(pubCtx, p.natsURL, msgs) }()
	// Two snapshots of the middle of the stream: the newer was taken while
	// ingest went on since the older, and goes on after it.
	testenv.WaitFor(t, "two snapshots of the middle of the stream", func() bool {
		snaps := snapshotSeqs(t, dir)
		return len(snaps) >= 2 && snaps[1] > n/4 && snaps[0] < n*3/4
	})
	p.kill()
	stopPub()
	<-pubDone
	loaded := snapshotSeqs(t, dir)[0]
	if loaded >= n {
		t.Fatalf("the newest snapshot is of sequence %d, the stream's end: not taken under load", loaded)
	}

	p = startPresenced(t, bin, dir, args...)
	p.waitReady()
	if stored := storedPrefix(t, p.natsURL, msgs); stored < n {
		if err := publishPaced(context.Background(), p.natsURL, msgs[stored:]); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "every message to be applied", func() bool {
		return metric(t, p.httpAddr, "presence_stream_applied_sequence") == float64(n)
	})
	t.Logf("restarted from the snapshot of sequence %d of %d", loaded, n)

	want := map[engine.Result]int{}
	for _, res := range oracle.Results(events)[loaded:] {
		want[res]++
	}
	for res, name := range map[engine.Result]string{engine.Applied: "applied", engine.Stale: "stale"} {
		if got := eventsCounted(t, p.httpAddr, name); got != want[res] {
			t.Errorf("after the restart %d events counted %s, want %d (the messages after sequence %d, in stream order)", got, name, want[res], loaded)
		}
	}
	if want[engine.Stale] == 0 {
		t.Error("no stale event after the snapshot: the results prove little")
	}
	truth := oracle.State(events)
	checkAgainstOracle(t, p.httpAddr, tokens, r, truth, users, 300)
	for i := range 40 {
		tn := e2eTenants[i%len(e2eTenants)]
		f := oracle.RandomFilter(r, oracle.Class(i%3), users)
		if i%4 == 0 {
			f = &engine.Filter{}
		}
		for by := engine.ByGroup; by <= engine.ByChat; by++ {
			checkBreakdown(t, p.httpAddr, tokens[tn], nil, truth[tn], by, f, "after the restart")
		}
	}
	p.stop()
}

// testCrash runs one crash and restart: see TestCrashRecovery.
func testCrash(t *testing.T, bin, tokensFile string, tokens map[string]string, msgs []wireMsg, truth oracle.Tenants, killAt float64, corrupt bool) {
	begin := time.Now()
	dir := t.TempDir()
	args := []string{"-snapshot-interval", "1s", "-log-level", "warn", "-rate-limit", "0", "-tokens", tokensFile}
	n := uint64(len(msgs))

	// 1. Publish the stream up to killAt, in two parts when the newest
	// snapshot is to be corrupted (the restart must then find an older one
	// in the data dir, not the object store's copy, whose sequence the test
	// does not know), each part applied and covered by a snapshot. Then
	// publish the rest and kill presenced as soon as it applies some of it:
	// in the middle of ingest, wherever that is. Nothing below depends on
	// when the kill lands: each step waits for a condition, with a deadline.
	p := startPresenced(t, bin, dir, args...)
	p.waitReady()
	first := uint64(killAt * float64(n))
	parts := []uint64{first}
	if corrupt {
		parts = []uint64{first / 2, first}
	}
	from := uint64(0)
	for _, upTo := range parts {
		if err := publishPaced(context.Background(), p.natsURL, msgs[from:upTo]); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, fmt.Sprintf("sequence %d applied and in a snapshot", upTo), func() bool {
			snaps := snapshotSeqs(t, dir)
			return metric(t, p.httpAddr, "presence_stream_applied_sequence") == float64(upTo) && len(snaps) > 0 && snaps[0] == upTo
		})
		from = upTo
	}
	pubCtx, stopPub := context.WithCancel(context.Background())
	defer stopPub()
	pubDone := make(chan error, 1)
	go func() { pubDone <- publishPaced(pubCtx, p.natsURL, msgs[first:]) }()
	testenv.WaitFor(t, "ingest of the rest to begin", func() bool {
		return metric(t, p.httpAddr, "presence_stream_applied_sequence") > float64(first)
	})
	p.kill()
	stopPub()
	pubErr := <-pubDone
	killedAt := time.Since(begin)
	t.Logf("killed after sequence %d of %d was applied, %v in; snapshots %v; publisher: %v",
		first, n, killedAt.Round(time.Millisecond), snapshotSeqs(t, dir), pubErr)

	// 2. The snapshot the restart must load: the newest, or with the newest
	// corrupted the one before it.
	snaps := snapshotSeqs(t, dir) // the newest may have been written after the parts
	loaded := snaps[0]
	var corrupted string
	if corrupt {
		corrupted = corruptSnapshot(t, dir, snaps[0])
		loaded = snaps[1]
	}

	// 3. Restart on the same data dir, publish what the crash cut off, and
	// wait until every message is applied.
	restart := time.Now()
	p = startPresenced(t, bin, dir, args...)
	p.waitReady()
	ready := time.Since(restart)
	stored := storedPrefix(t, p.natsURL, msgs)
	if stored < n {
		if err := publishPaced(context.Background(), p.natsURL, msgs[stored:]); err != nil {
			t.Fatalf("publishing the %d messages the crash cut off: %v", n-stored, err)
		}
	}
	testenv.WaitFor(t, "every message to be applied", func() bool {
		return metric(t, p.httpAddr, "presence_stream_applied_sequence") == float64(n)
	})
	t.Logf("restarted: ready in %v (snapshot of sequence %d loaded; %d of %d messages stored at the crash); all applied after %v",
		ready.Round(time.Millisecond), loaded, stored, n, time.Since(restart).Round(time.Millisecond))

	// 4. Nothing applied twice, nothing skipped: this run counted exactly
	// the messages after the snapshot it loaded.
	if got, want := eventsCounted(t, p.httpAddr), int(n-loaded); got != want {
		t.Errorf("after restart %d events counted, want %d (all after the snapshot of sequence %d)", got, want, loaded)
	}
	skipped := strings.Contains(p.log.String(), `"msg":"skipping unusable snapshot"`)
	switch {
	case corrupt && (!skipped || !strings.Contains(p.log.String(), corrupted)):
		t.Errorf("the log does not say that the corrupted %s was skipped:\n%s", corrupted, p.log)
	case !corrupt && skipped:
		t.Errorf("a snapshot written before a crash was skipped:\n%s", p.log)
	}

	// 5. Every indicator equals the oracle over all events.
	checkAgainstOracle(t, p.httpAddr, tokens, rand.New(rand.NewPCG(23, 24)), truth, crashUsers, 200)
	p.stop()
	t.Logf("subtest done in %v", time.Since(begin).Round(time.Millisecond))
}

// publishPaced publishes msgs in order with plain core NATS publishes,
// flushing every few thousand. A plain publish is fire and forget, and a
// stream drops what overflows its ingest queue (100k messages by default),
// so it keeps at most maxAhead messages published but not yet stored. It
// returns once the stream holds them all, or with the first error (the
// connection does not reconnect: after a kill, the test finds out what was
// stored and publishes the rest itself).
func publishPaced(ctx context.Context, url string, msgs []wireMsg) error {
	const (
		flushEvery = 5_000
		maxAhead   = 40_000
	)
	nc, err := nats.Connect(url, nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	stream, err := js.Stream(ctx, "PRESENCE")
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	base := info.State.Msgs
	// storedAtLeast waits until the stream holds want messages, bounded by
	// ctx and by a minute of no progress.
	storedAtLeast := func(want uint64) error {
		deadline := time.Now().Add(time.Minute)
		for {
			info, err := stream.Info(ctx)
			if err != nil {
				return err
			}
			if info.State.Msgs >= want {
				return nil
			}
			if time.Now().After(deadline) {
				return errors.New("the stream holds " + strconv.FormatUint(info.State.Msgs, 10) +
					" messages, want " + strconv.FormatUint(want, 10) + ": some were dropped")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i, m := range msgs {
		if err := nc.Publish(m.subject, m.body); err != nil {
			return err
		}
		if sent := i + 1; sent%flushEvery == 0 {
			if err := nc.Flush(); err != nil {
				return err
			}
			if sent > maxAhead {
				if err := storedAtLeast(base + uint64(sent-maxAhead)); err != nil {
					return err
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	return storedAtLeast(base + uint64(len(msgs)))
}

// storedPrefix returns how many of msgs the stream holds after a crash. One
// connection publishes them in order, so the stream holds a prefix: it
// checks that it has no gap and that its first and last messages are the
// prefix's.
func storedPrefix(t *testing.T, url string, msgs []wireMsg) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(natsConnect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "PRESENCE")
	if err != nil {
		t.Fatal(err)
	}
	st := stream.CachedInfo().State
	if st.FirstSeq != 1 || st.Msgs != st.LastSeq || st.LastSeq > uint64(len(msgs)) {
		t.Fatalf("the stream after the crash: %+v; want messages 1 to at most %d, no gap", st, len(msgs))
	}
	for _, seq := range []uint64{1, st.LastSeq} {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if want := msgs[seq-1]; m.Subject != want.subject || !bytes.Equal(m.Data, want.body) {
			t.Fatalf("stream message %d is %s %s, want %s %s", seq, m.Subject, m.Data, want.subject, want.body)
		}
	}
	return st.LastSeq
}

// snapshotSeqs returns the sequences of the snapshot files in dir's
// snapshots directory, newest first. It reads the names that snapshot.Dir
// writes, engine-<stream creation time, 20 digits>-<sequence, 20
// digits>.snap, of one stream here, and ignores other files (such as the
// temporary file of a write cut short by the kill).
func snapshotSeqs(t *testing.T, dataDir string) []uint64 {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range entries {
		_, digits, ok := strings.Cut(strings.TrimPrefix(e.Name(), "engine-"), "-")
		if digits, ok2 := strings.CutSuffix(digits, ".snap"); ok && ok2 {
			if seq, err := strconv.ParseUint(digits, 10, 64); err == nil {
				seqs = append(seqs, seq)
			}
		}
	}
	slices.Sort(seqs)
	slices.Reverse(seqs)
	return seqs
}

// corruptSnapshot flips 16 bytes in the middle of the snapshot of seq and
// returns its path.
func corruptSnapshot(t *testing.T, dataDir string, seq uint64) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dataDir, "snapshots", fmt.Sprintf("engine-*-%020d.snap", seq)))
	if err != nil || len(paths) != 1 {
		t.Fatalf("the snapshot of sequence %d: %v %v", seq, paths, err)
	}
	path := paths[0]
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mid := len(data) / 2
	for i := mid; i < min(mid+16, len(data)); i++ {
		data[i] ^= 0xff
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
