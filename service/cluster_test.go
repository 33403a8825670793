package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/publish"
)

// clusterTenants are spread over the partitions of the cluster tests.
var clusterTenants = []string{"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell"}

const clusterPartitions, clusterCopies = 4, 2

// clusterArgs are the flags of an instance of the cluster tests.
func clusterArgs(urls, instance string) []string {
	return []string{"-nats-url", urls, "-partitions", fmt.Sprint(clusterPartitions), "-copies", fmt.Sprint(clusterCopies),
		"-stream-replicas", "3", "-instance", instance, "-snapshot-interval", "1s", "-log-level", "info"}
}

// post asks a query of tenant at addr and returns the status and body.
func post(t *testing.T, addr, tenant, query string, vars map[string]any) (int, []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tenant-Id", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// answerOf decodes the indicator of a 200 answer.
func answerOf(body []byte) (oracle.Indicator, bool) {
	var resp struct {
		Data   struct{ ConnectedUsersIndicator oracle.Indicator }
		Errors []any
	}
	if json.Unmarshal(body, &resp) != nil || len(resp.Errors) > 0 {
		return oracle.Indicator{}, false
	}
	return resp.Data.ConnectedUsersIndicator, true
}

// appliedPast counts the partitions held at addr whose applied sequence
// is past seq.
func appliedPast(t *testing.T, addr string, seq uint64) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	n := 0
	for line := range strings.Lines(string(data)) {
		if !strings.HasPrefix(line, "presence_stream_applied_sequence{") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil && v > float64(seq) {
			n++
		}
	}
	return n
}

// publishRetrying publishes events through the cluster with the project's
// publisher (each acknowledged by the replicated stream), retrying an event
// whose acknowledgement did not come: a duplicate changes nothing.
func publishRetrying(t *testing.T, js jetstream.JetStream, events []oracle.Delivered) {
	t.Helper()
	pub, err := publish.New(js, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range events {
		for attempt := 1; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := pub.Publish(ctx, events[i].Tenant, &events[i].Ev)
			cancel()
			if err == nil {
				break
			}
			if attempt == 20 {
				t.Fatalf("event %d not acknowledged after 20 attempts: %v", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestCluster runs three instances of the program on a three-node NATS
// cluster (tenants in 4 partitions, 2 copies, streams of 3 replicas) and
// checks section 7 of the contract: every instance answers every tenant as
// the oracle does, byte for byte as the others; a subscription through an
// instance that does not hold its tenant; a NATS node killed while events
// are published and acknowledged, with nothing lost; an instance handed
// over with SIGTERM while queries run, none answered wrongly or
// unavailable; dead letters once; an instance killed (-9), its partitions
// held again; its restart and rebalance; and a partition count other than
// the stream's refused.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three processes on a three-node cluster: skipped with -short")
	}
	bin := buildPresenced(t)
	nc := testenv.StartCluster(t, 3)
	urls := nc.URLs()
	conn, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	js, _ := jetstream.New(conn)

	names := []string{"a", "b", "c"}
	procs := map[string]*presencedProcess{}
	dirs := map[string]string{}
	for _, name := range names {
		dirs[name] = t.TempDir()
		procs[name] = startPresenced(t, bin, dirs[name], clusterArgs(urls, name)...)
	}
	for _, name := range names {
		procs[name].waitReady()
	}
	alive := func() []*presencedProcess {
		var out []*presencedProcess
		for _, name := range names {
			if p := procs[name]; p != nil && !p.hasExited() {
				out = append(out, p)
			}
		}
		return out
	}
	held := func() int {
		n := 0
		for _, p := range alive() {
			if v := metric(t, p.httpAddr, "presence_partitions_held"); v > 0 {
				n += int(v)
			}
		}
		return n
	}
	testenv.WaitFor(t, "every partition held twice", func() bool { return held() == clusterPartitions*clusterCopies })

	r := rand.New(rand.NewPCG(71, 72))
	const users = 40
	events := oracle.Events(r, clusterTenants, users, 8, 100)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	half := len(events) / 2

	// agree checks every instance against the oracle over events, for every
	// tenant and random filters, and the bodies against each other's.
	agree := func(what string, events []oracle.Delivered) {
		t.Helper()
		truth := oracle.State(events)
		filters := []*engine.Filter{{}}
		for i := range 30 {
			filters = append(filters, oracle.RandomFilter(r, oracle.Class(i%3), users))
		}
		for _, tn := range clusterTenants {
			for _, f := range filters {
				want := oracle.Answer(truth[tn], f)
				var first []byte
				for _, p := range alive() {
					var code int
					var body []byte
					// Until every event is applied everywhere.
					testenv.WaitFor(t, what+": "+p.httpAddr+" to answer "+tn, func() bool {
						code, body = post(t, p.httpAddr, tn, testenv.IndicatorQuery, variables(f))
						got, ok := answerOf(body)
						return code == http.StatusOK && ok && got == want
					})
					if first == nil {
						first = body
					} else if !bytes.Equal(body, first) {
						t.Fatalf("%s: tenant %s: %s answered %s, another %s", what, tn, p.httpAddr, body, first)
					}
				}
			}
		}
	}

	t.Run("every instance answers every tenant", func(t *testing.T) {
		publishRetrying(t, js, events[:half])
		agree("first half", events[:half])
		forwarded := 0.0
		for _, p := range alive() {
			forwarded += metric(t, p.httpAddr, `presence_forwarded_requests_total{result="ok"}`)
			if got := metric(t, p.httpAddr, "presence_cluster_instances"); got != 3 {
				t.Errorf("%s sees %v instances, want 3", p.httpAddr, got)
			}
		}
		if forwarded == 0 {
			t.Fatal("no request was forwarded: every tenant was held everywhere, the test proves little")
		}
	})

	t.Run("a subscription through an instance that does not hold its tenant", func(t *testing.T) {
		// With 4 partitions, 2 copies and 3 instances, some instance does
		// not hold some tenant's partition: subscribe there.
		p := procs["a"]
		tenant := ""
		for _, tn := range clusterTenants {
			if metric(t, p.httpAddr, `presence_connected_users{tenant="`+tn+`"}`) < 0 {
				tenant = tn // no series: not held by a
				break
			}
		}
		if tenant == "" {
			t.Skip("a holds every tenant")
		}
		c := liveDial(t, p.httpAddr, map[string]any{"X-Tenant-Id": tenant})
		if err := c.Subscribe(t.Context(), "s", liveSubscription, map[string]any{"f": nil, "ms": 0}); err != nil {
			t.Fatal(err)
		}
		truth := oracle.State(events[:half])
		m, err := c.Next(testenv.WaitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := pushed(t, m), oracle.Answer(truth[tenant], &engine.Filter{}); got != want {
			t.Fatalf("first value %+v, want %+v", got, want)
		}
		login := presence.Event{Type: presence.Login, UserID: "subscriber-probe", TS: time.Now().UnixNano(), Fields: presence.HasTS}
		publishRetrying(t, js, []oracle.Delivered{{Tenant: tenant, Ev: login}})
		want := oracle.Answer(oracle.State(append(append([]oracle.Delivered{}, events[:half]...), oracle.Delivered{Tenant: tenant, Ev: login}))[tenant], &engine.Filter{})
		for {
			m, err := c.Next(testenv.WaitTimeout)
			if err != nil {
				t.Fatalf("waiting for the login: %v", err)
			}
			if pushed(t, m) == want {
				break
			}
		}
		events = append(events, oracle.Delivered{Tenant: tenant, Ev: login})
	})

	t.Run("a NATS node killed while events are published", func(t *testing.T) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			publishRetrying(t, js, events[half:])
		}()
		time.Sleep(200 * time.Millisecond)
		node := nc.Nodes()[0]
		nc.Stop(node)
		start := time.Now()
		<-done
		t.Logf("published with a node down in %v", time.Since(start).Round(time.Millisecond))
		agree("after a NATS node was lost", events)
		t.Logf("answered as the oracle everywhere after %v", time.Since(start).Round(time.Millisecond))
		nc.Restart(node)
	})

	t.Run("SIGTERM hands over with no query answered wrongly", func(t *testing.T) {
		truth := oracle.State(events)
		var wrong, asked atomic.Int64
		var mu sync.Mutex
		var first string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, name := range []string{"b", "c"} {
			p := procs[name]
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					tn := clusterTenants[i%len(clusterTenants)]
					code, body := post(t, p.httpAddr, tn, testenv.IndicatorQuery, variables(&engine.Filter{}))
					got, ok := answerOf(body)
					asked.Add(1)
					if code != http.StatusOK || !ok || got != oracle.Answer(truth[tn], &engine.Filter{}) {
						wrong.Add(1)
						mu.Lock()
						if first == "" {
							first = fmt.Sprintf("%s %s: %d %s", p.httpAddr, tn, code, body)
						}
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(300 * time.Millisecond)
		stopped := time.Now()
		procs["a"].stop()
		t.Logf("a exited %v after SIGTERM", time.Since(stopped).Round(time.Millisecond))
		testenv.WaitFor(t, "every partition held twice by b and c", func() bool { return held() == clusterPartitions*clusterCopies })
		t.Logf("every partition held twice by b and c %v after SIGTERM", time.Since(stopped).Round(time.Millisecond))
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()
		t.Logf("%d queries during the handover, %d wrong or unavailable", asked.Load(), wrong.Load())
		if wrong.Load() > 0 {
			t.Fatalf("%d of %d queries answered wrongly or unavailable during the handover; the first: %s", wrong.Load(), asked.Load(), first)
		}
	})

	t.Run("dead letters once", func(t *testing.T) {
		bad := badMessages()
		var lastBad uint64
		for _, m := range bad {
			ack, err := js.Publish(t.Context(), m.subject, []byte(m.body))
			if err != nil {
				t.Fatal(err)
			}
			lastBad = ack.Sequence
		}
		// A login behind them in every partition: once each holder has
		// applied past lastBad, every copy has seen every bad message.
		var probes []oracle.Delivered
		for p := range clusterPartitions {
			tenant := ""
			for i := 0; tenant == ""; i++ {
				if tn := fmt.Sprint("probe", i); presence.Partition(tn, clusterPartitions) == p {
					tenant = tn
				}
			}
			probes = append(probes, oracle.Delivered{Tenant: tenant,
				Ev: presence.Event{Type: presence.Login, UserID: "u", TS: time.Now().UnixNano(), Fields: presence.HasTS}})
		}
		publishRetrying(t, js, probes)
		testenv.WaitFor(t, "every copy of every partition past the bad messages", func() bool {
			past := 0
			for _, p := range alive() {
				past += appliedPast(t, p.httpAddr, lastBad)
			}
			return past == clusterPartitions*clusterCopies
		})
		checkDeadLetters(t, conn, bad)
	})

	// The instances started here are killed when the subtest ends: the
	// subtests after it need no more than one instance.
	t.Run("an instance killed, restarted, and the partitions rebalanced", func(t *testing.T) {
		procs["a"] = startPresenced(t, bin, dirs["a"], clusterArgs(urls, "a")...)
		procs["a"].waitReady()
		testenv.WaitFor(t, "every partition held twice by a, b and c", func() bool {
			return held() == clusterPartitions*clusterCopies && metric(t, procs["a"].httpAddr, "presence_partitions_held") > 0
		})
		killed := time.Now()
		procs["b"].kill()
		testenv.WaitFor(t, "b's partitions held again", func() bool { return held() == clusterPartitions*clusterCopies })
		t.Logf("the partitions of the killed instance were held again after %v", time.Since(killed).Round(time.Millisecond))
		agree("after a kill", events)
		procs["b"] = startPresenced(t, bin, dirs["b"], clusterArgs(urls, "b")...)
		procs["b"].waitReady()
		testenv.WaitFor(t, "b to hold partitions again", func() bool {
			return metric(t, procs["b"].httpAddr, "presence_partitions_held") > 0 && held() == clusterPartitions*clusterCopies
		})
		agree("after the restart", events)
	})

	t.Run("another partition count is refused", func(t *testing.T) {
		args := clusterArgs(urls, "d")
		for i, a := range args {
			if a == "-partitions" {
				args[i+1] = "8"
			}
		}
		p := startPresenced(t, bin, t.TempDir(), args...)
		select {
		case <-p.exited:
		case <-time.After(testenv.WaitTimeout):
			t.Fatal("an instance of 8 partitions on a stream of 4 did not stop")
		}
		if p.waitErr == nil || !strings.Contains(p.log.String(), "4") || !strings.Contains(p.log.String(), "8") {
			t.Fatalf("exit %v; the log should name both counts:\n%s", p.waitErr, p.log)
		}
	})
}
