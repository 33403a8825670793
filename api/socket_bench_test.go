package api_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	brute "github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/wsclient"
)

// BenchmarkApplyWithSubscriptions measures how many events per second the
// engine applies, on one goroutine as ingest does, while subscriptions are
// open over real WebSockets (10 sockets, each read by its client, in the
// same process, as fast as it comes), against none. "same" subscribes 1000
// times to one filter (one view); "varied" to random filters of every query
// class (a view each, which events have to keep up to date). The
// subscriptions throttle at minIntervalMs 1000 (the default) or push every
// change (0). "watches" holds the varied filters' engine watches with no
// socket and no reader: the engine's share of the cost.
//
//	go test -run XXX -bench ApplyWithSubscriptions -benchtime 3s ./api/
func BenchmarkApplyWithSubscriptions(b *testing.B) {
	const users = 2000
	r := rand.New(rand.NewPCG(71, 72))
	events := brute.Events(r, []string{"acme"}, users, 25, 0)
	for _, c := range []struct {
		name   string
		subs   int
		varied bool
		ms     int
	}{
		{"subs=0", 0, false, 1000},
		{"subs=1000/same/ms=1000", 1000, false, 1000},
		{"subs=1000/same/ms=0", 1000, false, 0},
		{"subs=1000/varied/ms=1000", 1000, true, 1000},
		{"subs=1000/varied/ms=0", 1000, true, 0},
		{"watches=1000/varied", 1000, true, -1},
	} {
		b.Run(c.name, func(b *testing.B) {
			e, _ := engine.New(engine.Config{MaxViews: 4})
			for i := range events { // every user known, about half connected
				e.Apply("acme", &events[i].Ev)
			}
			_, ts := liveServer(b, api.Config{Engine: e, SubscriptionsPerClient: c.subs + 1})
			var received atomic.Int64
			fr := rand.New(rand.NewPCG(73, 74))
			same := &engine.Filter{GroupIDs: []string{"g1", "g2"}, ProjectIDs: []string{"p0", "p1"}}
			var conns []*wsclient.Conn
			for i := range c.subs {
				if c.ms < 0 {
					w := e.Watch("acme", brute.RandomFilter(fr, brute.Class(i%3), users))
					defer w.Close()
					received.Add(1)
					continue
				}
				if i%100 == 0 {
					conns = append(conns, acked(b, ts, map[string]any{"X-Tenant-Id": "acme"}))
				}
				f := same
				if c.varied {
					f = brute.RandomFilter(fr, brute.Class(i%3), users)
				}
				vars := variablesOf(f)
				vars["ms"] = c.ms
				conns[len(conns)-1].Subscribe(b.Context(), fmt.Sprint(i), liveQuery, vars)
			}
			for _, conn := range conns {
				go func() {
					for {
						if _, err := conn.Next(time.Hour); err != nil && !errors.Is(err, wsclient.ErrTimeout) {
							return
						}
						received.Add(1)
					}
				}()
			}
			for received.Load() < int64(c.subs) { // every first value
				time.Sleep(10 * time.Millisecond)
			}
			views := e.Stats().Views
			start, before := time.Now(), received.Load()
			round := int64(0)
			i := 0
			for b.Loop() {
				if i == len(events) {
					i, round = 0, round+1
				}
				ev := events[i].Ev
				ev.TS += (round + 1) << 40 // newer than anything applied: every event applies
				e.Apply("acme", &ev)
				i++
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(received.Load()-before)/elapsed.Seconds(), "pushes/s")
			b.ReportMetric(float64(views), "views")
		})
	}
}
