package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/presenced/presenced/engine"
)

// A subscription to a tenant held elsewhere follows a watch of the holder's
// engine: the front instance asks a holder of the partition to watch the
// filter, with the subject of an inbox of its own; the holder sends each
// value there as a request, one at a time, and the front's reply is the
// acknowledgement; with no new value, a heartbeat every relayHeartbeat. A
// holder whose request finds no one (the front closed the watch, or is
// gone) stops. A front that hears nothing for relayLost takes the holder
// for gone and asks again, reaching the next holder: the subscription goes
// on from there, with at most one value repeated or skipped in between.
const (
	relayHeartbeat = time.Second
	relayLost      = 3 * relayHeartbeat
	// relayAckWait bounds how long a holder waits for the front to take a
	// value.
	relayAckWait = 5 * time.Second
)

// Headers of the relay: the front's inbox, and the notice of a holder that
// stops serving the partition (it is moving or stopping), so that the front
// reaches the next holder at once rather than after relayLost.
const (
	headerInbox = "Presenced-Inbox"
	headerMoved = "Presenced-Moved"
)

// KindWatch is the endpoint of the watches relayed to a holder.
const KindWatch = "watch"

// serveWatches adds to svc the endpoint where holders of partition p take
// watches on eng.
func serveWatches(ctx context.Context, svc micro.Service, nc *nats.Conn, stream string, p int, eng *engine.Engine) error {
	return svc.AddEndpoint(KindWatch, micro.HandlerFunc(func(req micro.Request) {
		inbox := req.Headers().Get(headerInbox)
		var f engine.Filter
		if inbox == "" || json.Unmarshal(req.Data(), &f) != nil {
			_ = req.Error("400", "a watch needs an inbox and a filter", nil)
			return
		}
		w := eng.Watch(req.Headers().Get(headerTenant), &f)
		if err := req.Respond(nil); err != nil {
			w.Close()
			return
		}
		go pushWatch(ctx, nc, inbox, w)
	}), micro.WithEndpointSubject(subject(stream, p, KindWatch)))
}

// pushWatch sends w's values to inbox until the front stops taking them or
// ctx ends (the holder stops serving the partition).
func pushWatch(ctx context.Context, nc *nats.Conn, inbox string, w *engine.Watch) {
	defer w.Close()
	beat := time.NewTicker(relayHeartbeat)
	defer beat.Stop()
	var last engine.Indicator
	first := true
	for {
		ind, changed := w.Next()
		var body []byte
		if first || ind != last {
			body, _ = json.Marshal(ind)
		}
		rctx, cancel := context.WithTimeout(ctx, relayAckWait)
		_, err := nc.RequestWithContext(rctx, inbox, body) // an empty body is a heartbeat
		cancel()
		if err != nil {
			return // the front is gone, or has closed the watch
		}
		if body != nil {
			first, last = false, ind
			continue // a change may have come meanwhile
		}
		select {
		case <-ctx.Done():
			moved := nats.NewMsg(inbox)
			moved.Header.Set(headerMoved, "1")
			_ = nc.PublishMsg(moved)
			return
		case <-changed:
		case <-beat.C:
		}
	}
}

// remoteWatch follows a filter of a tenant held elsewhere, through a
// holder's watch (see the top of this file).
type remoteWatch struct {
	fwd    *forwarder
	p      int
	tenant string
	filter []byte

	mu      sync.Mutex
	value   engine.Indicator
	got     bool          // a value came
	changed chan struct{} // closed and replaced at each new value
	err     error         // set when no holder could be reached: the end
	heard   time.Time
	sub     *nats.Subscription
	moved   chan struct{} // 1-buffered: the holder said it stops
	stop    context.CancelFunc
	done    chan struct{}
}

// watch starts following f of tenant, in partition p, at a holder. It
// returns ErrUnavailable when no holder takes it within UnavailableAfter.
func (f *forwarder) watch(ctx context.Context, p int, tenant string, filter *engine.Filter) (*remoteWatch, error) {
	body, err := json.Marshal(filter)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w := &remoteWatch{fwd: f, p: p, tenant: tenant, filter: body, changed: make(chan struct{}),
		moved: make(chan struct{}, 1), stop: stop, done: make(chan struct{})}
	first := w.changed // closed by the holder's first value
	if err := w.attach(ctx); err != nil {
		stop()
		return nil, err
	}
	go w.guard(ctx)
	// The first value is the holder's: until it comes, the watch has none
	// to give.
	t := time.NewTimer(UnavailableAfter)
	defer t.Stop()
	select {
	case <-first:
	case <-t.C:
		w.Close()
		return nil, ErrUnavailable
	}
	if err := w.Err(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// attach asks a holder for the watch, on a new inbox: values from a holder
// left behind go to the old inbox, which nobody reads any more. The new
// inbox is the current one before the request goes: the holder sends the
// first value as soon as it answers.
func (w *remoteWatch) attach(ctx context.Context) error {
	inbox := w.fwd.nc.NewInbox()
	sub, err := w.fwd.nc.Subscribe(inbox, w.take)
	if err != nil {
		return err
	}
	w.mu.Lock()
	old := w.sub
	w.sub, w.heard = sub, time.Now()
	w.mu.Unlock()
	msg := nats.NewMsg(subject(w.fwd.stream, w.p, KindWatch))
	msg.Header.Set(headerTenant, w.tenant)
	msg.Header.Set(headerInbox, inbox)
	msg.Data = w.filter
	_, err = w.fwd.request(ctx, w.p, msg)
	if err != nil {
		w.mu.Lock()
		w.sub = old
		w.mu.Unlock()
		_ = sub.Unsubscribe()
		return err
	}
	if old != nil {
		_ = old.Unsubscribe()
	}
	return nil
}

// take is a value or a heartbeat from the holder.
func (w *remoteWatch) take(m *nats.Msg) {
	w.mu.Lock()
	current := w.sub != nil && m.Sub == w.sub
	if current && m.Header.Get(headerMoved) != "" {
		w.mu.Unlock()
		select {
		case w.moved <- struct{}{}:
		default:
		}
		return
	}
	if current {
		w.heard = time.Now()
		var ind engine.Indicator
		if len(m.Data) > 0 && json.Unmarshal(m.Data, &ind) == nil && (!w.got || ind != w.value) {
			w.value, w.got = ind, true
			close(w.changed)
			w.changed = make(chan struct{})
		}
	}
	w.mu.Unlock()
	if current {
		_ = m.Respond(nil)
	}
}

// guard attaches again when the holder falls silent or says it stops,
// until ctx ends or no holder can be reached.
func (w *remoteWatch) guard(ctx context.Context) {
	defer close(w.done)
	tick := time.NewTicker(relayHeartbeat / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			w.mu.Lock()
			silent := time.Since(w.heard) > relayLost
			w.mu.Unlock()
			if !silent {
				continue
			}
		case <-w.moved:
		}
		if err := w.attach(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			w.err = err
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
			return
		}
	}
}

// Next returns the current value and a channel closed at the next one (or
// when the watch fails: see Err).
func (w *remoteWatch) Next() (engine.Indicator, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.value, nil
	}
	return w.value, w.changed
}

// Err is why the watch ended: no holder of the partition could be reached
// (ErrUnavailable). Nil while it goes on.
func (w *remoteWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the watch; the holder stops at its next request.
func (w *remoteWatch) Close() {
	w.stop()
	<-w.done
	w.mu.Lock()
	if w.sub != nil {
		_ = w.sub.Unsubscribe()
	}
	w.mu.Unlock()
}

// request sends msg to a holder of partition p and returns the first
// answer, for at most UnavailableAfter; then ErrUnavailable. Every answer
// comes to one inbox (awaitAnswers), so that a request sent again still
// takes the answer to an earlier send. It sends again when no holder has interest (none
// caught up yet: taking over, or none running), when a holder answers that
// it let the partition go, and when no answer came within resendAfter: in a
// NATS cluster a holder's unsubscribe reaches the other servers a moment
// later, and a request routed meanwhile to the server it left is dropped
// there, with no answer at all.
func (f *forwarder) request(ctx context.Context, p int, msg *nats.Msg) (*nats.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, UnavailableAfter)
	defer cancel()
	inbox, replies, done, err := f.awaitAnswers()
	if err != nil {
		return nil, fmt.Errorf("cluster: partition %d: %w", p, err)
	}
	defer done()
	msg.Reply = inbox
	send := func() error {
		if err := f.nc.PublishMsg(msg); err != nil {
			return fmt.Errorf("cluster: partition %d: %w", p, err)
		}
		return nil
	}
	// The first send goes at once, not from the timer: a timer that fires
	// at once still waits for the scheduler to run it, tens of µs here.
	if err := send(); err != nil {
		return nil, err
	}
	backoff := 5 * time.Millisecond
	wait := time.NewTimer(resendAfter)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ErrUnavailable
		case <-wait.C:
			if err := send(); err != nil {
				return nil, err
			}
			wait.Reset(resendAfter)
		case reply := <-replies:
			switch {
			case isNoResponders(reply), reply.Header.Get(micro.ErrorCodeHeader) == codeNotHeld:
				wait.Reset(backoff)
				backoff = min(2*backoff, 200*time.Millisecond)
			case reply.Header.Get(micro.ErrorCodeHeader) != "":
				return nil, fmt.Errorf("cluster: partition %d: %s %s", p, reply.Header.Get(micro.ErrorCodeHeader), reply.Header.Get(micro.ErrorHeader))
			default:
				return reply, nil
			}
		}
	}
}

// resendAfter is how long request waits for an answer before it sends again:
// far above a query's time (microseconds to milliseconds), so that a request
// is rarely run twice, and a quarter of UnavailableAfter, so that a dropped
// one still finds a holder in time.
const resendAfter = UnavailableAfter / 4

// isNoResponders reports whether m is the server's notice that no one
// subscribes to the subject of a request: an empty message with the status
// header 503 (what nats.go turns into ErrNoResponders for its own requests).
func isNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}
