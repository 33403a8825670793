package engine_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/presence"
)

// chunkLoad is an engine of chunkLoadUsers users of tenant "big", a third of
// their shuffled events applied; until stop (or the test's end), every
// chunk of a long read is followed by the next 250 events.
type chunkLoad struct {
	e       *engine.Engine
	events  []oracle.Delivered
	applied int // events[:applied] are applied
	chunks  int // chunks read so far
	stop    func()
}

const chunkLoadUsers = 30_000

func newChunkLoad(t *testing.T, r *rand.Rand, dups int, cfg engine.Config) *chunkLoad {
	l := &chunkLoad{e: mustEngine(t, cfg), events: oracle.Events(r, []string{"big"}, chunkLoadUsers, 6, dups)}
	r.Shuffle(len(l.events), func(i, j int) { l.events[i], l.events[j] = l.events[j], l.events[i] })
	for l.applied < len(l.events)/3 {
		l.next()
	}
	l.stop = engine.AfterScanChunk(func() {
		l.chunks++
		for k := 0; k < 250 && l.applied < len(l.events); k++ {
			l.next()
		}
	})
	t.Cleanup(l.stop)
	return l
}

// next applies the next event.
func (l *chunkLoad) next() {
	l.e.Apply(l.events[l.applied].Tenant, &l.events[l.applied].Ev)
	l.applied++
}

// rest applies the events not applied yet.
func (l *chunkLoad) rest() {
	for l.applied < len(l.events) {
		l.next()
	}
}

// truth is the oracle's state of the events applied.
func (l *chunkLoad) truth() oracle.Tenants { return oracle.State(l.events[:l.applied]) }

// TestScanUnderLoad asks class-c filters for the first time and breakdowns
// over more candidates than one chunk while events are applied between the
// chunks, and checks each answer against the oracle as of the end of its
// read, then the views again once every event is applied.
func TestScanUnderLoad(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 41))
	l := newChunkLoad(t, r, 1_000, engine.Config{MaxViews: 1000})
	e := l.e

	// Wide filters: two or more of the 8 groups, or of the 5 routing
	// groups, with any masks, match thousands of users.
	var views []*engine.Filter
	long := 0 // asks read in more than one chunk
	for i := 0; i < 16 && l.applied < len(l.events); i++ {
		f := oracle.RandomFilter(r, oracle.ClassC, chunkLoadUsers)
		f.UserIDs, f.ProjectIDs, f.RoutingGroupIDs = nil, nil, nil
		if len(f.Roles) == 0 { // an empty list matches nobody: nothing to read
			f.Roles = nil
		}
		if len(f.AvailabilityStatus) == 0 {
			f.AvailabilityStatus = nil
		}
		if len(f.ChatAvailability) == 0 {
			f.ChatAvailability = nil
		}
		f.GroupIDs = []string{"g1", "g2", "g3", fmt.Sprint("g", 4+i%4)}
		if i%2 == 0 {
			f.GroupIDs, f.RoutingGroupIDs = nil, []string{"r0", "r1", "r2", fmt.Sprint("r", 3+i%2)}
		}
		before := l.chunks
		got := e.Query("big", f)
		if want := oracle.Query(l.truth()["big"], f); got != want {
			t.Fatalf("first ask of %+v, %d events applied:\n got %+v\nwant %+v", *f, l.applied, got, want)
		}
		views = append(views, f)
		by := engine.Dimension(i % int(engine.ByChat+1))
		rows := e.Breakdown("big", by, f)
		checkRows(t, rows, l.truth(), "big", by, f, fmt.Sprintf("breakdown, %d events applied", l.applied))
		if l.chunks > before {
			long++
		}
	}
	l.rest()
	truth := l.truth()
	for _, f := range views {
		checkQuery(t, e, truth, "big", f, "a view built under load, after every event")
	}
	if long < 12 {
		t.Fatalf("only %d of %d asks read in more than one chunk: the test proves little", long, len(views))
	}
}

// TestScanReset asks a view whose build a Reset interrupts: the answer is
// that of the state after the Reset, here the empty one.
func TestScanReset(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 42))
	e := mustEngine(t, engine.Config{})
	for _, d := range oracle.Events(r, []string{"big"}, 30_000, 3, 0) {
		e.Apply(d.Tenant, &d.Ev)
	}
	f := &engine.Filter{RoutingGroupIDs: []string{"r0", "r1", "r2", "r3"}}
	if e.Query("big", &engine.Filter{RoutingGroupIDs: []string{"r0", "r1", "r2", "r4"}}).Connected < 4096 {
		t.Fatal("the view is read in one chunk: the test proves little")
	}
	resets := 0
	defer engine.AfterScanChunk(func() {
		if resets == 0 {
			e.Reset()
		}
		resets++
	})()
	if got := e.Query("big", f); got != (engine.Indicator{}) {
		t.Fatalf("asked across a Reset: %+v, want nothing", got)
	}
	if got := e.Breakdown("big", engine.ByRole, f); got != nil {
		t.Fatalf("a breakdown across a Reset: %+v, want none", got)
	}
	if resets == 0 {
		t.Fatal("no Reset during the read")
	}
}

// TestWatchScan opens watches of filters with no view yet, whose first
// build reads more than one chunk, while events are applied between the
// chunks: each watch's first value is the oracle's as of the end of its
// build, it follows the events after, and a watch naming a group that an
// event named during its build counts that event's user.
func TestWatchScan(t *testing.T) {
	l := newChunkLoad(t, rand.New(rand.NewPCG(43, 43)), 0, engine.Config{})
	e := l.e
	newcomer := event(presence.Login, "newcomer", t0)
	newcomer.Fields |= presence.HasGroups
	newcomer.GroupIDs = []string{"g-new"}
	l.events = slices.Insert(l.events, l.applied+100, oracle.Delivered{Tenant: "big", Ev: *newcomer})

	var watches []*engine.Watch
	var filters []*engine.Filter
	for i := range 4 {
		f := &engine.Filter{GroupIDs: []string{"g1", "g2", "g3", fmt.Sprint("g", 4+i)}}
		if i == 0 {
			f.GroupIDs = append(f.GroupIDs, "g-new") // named by the newcomer during the build
		}
		before := l.chunks
		w := e.Watch("big", f)
		defer w.Close()
		got, _ := w.Next()
		if want := oracle.Query(l.truth()["big"], f); got != want {
			t.Fatalf("watch %d, %d events applied:\n got %+v\nwant %+v", i, l.applied, got, want)
		}
		if l.chunks == before {
			t.Fatalf("watch %d built in one chunk: the test proves little", i)
		}
		watches, filters = append(watches, w), append(filters, f)
	}
	l.stop()
	_, changed := watches[0].Next()
	l.rest()
	select {
	case <-changed:
	default:
		t.Fatal("the watch was not told of the events after its build")
	}
	truth := l.truth()["big"]
	for i, w := range watches {
		if got, _ := w.Next(); got != oracle.Query(truth, filters[i]) {
			t.Fatalf("watch %d after every event: %+v, want %+v", i, got, oracle.Query(truth, filters[i]))
		}
	}
	if oracle.Query(truth, &engine.Filter{GroupIDs: []string{"g-new"}}).Connected != 1 {
		t.Fatal("the newcomer is not connected: the test proves little")
	}
}

// TestUsersScan asks first pages of connectedUsers for filters with no view
// and more candidates than one chunk, while events are applied between the
// chunks of the view's build: each page and its total are the oracle's as
// of the end of the build.
func TestUsersScan(t *testing.T) {
	l := newChunkLoad(t, rand.New(rand.NewPCG(44, 44)), 0, engine.Config{})
	for i := range 4 {
		f := &engine.Filter{RoutingGroupIDs: []string{"r0", "r1", "r2", fmt.Sprint("r", 3+i%2)}, GroupIDs: []string{"g1", "g2", "g3", fmt.Sprint("g", 4+i)}}
		order := orders[i%len(orders)]
		before := l.chunks
		p, err := l.e.Users("big", f, engine.Page{Order: order, First: 50})
		if err != nil {
			t.Fatal(err)
		}
		if l.chunks == before {
			t.Fatalf("page %d: no chunked read: the test proves little", i)
		}
		want := oracle.Users(l.truth()["big"], f, order)
		if p.Total != int64(len(want)) || len(p.Users) != min(50, len(want)) {
			t.Fatalf("page %d: total %d and %d users, want %d and %d", i, p.Total, len(p.Users), len(want), min(50, len(want)))
		}
		for k := range p.Users {
			if !reflect.DeepEqual(p.Users[k], want[k]) {
				t.Fatalf("page %d, user %d:\n got %+v\nwant %+v", i, k, p.Users[k], want[k])
			}
		}
	}
}
