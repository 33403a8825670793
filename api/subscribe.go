package api

import (
	"context"
	"errors"
	"strconv"
	"time"

	graphql "github.com/graph-gophers/graphql-go"

	"github.com/presenced/presenced/engine"
)

// DefaultMinInterval is the throttle of a subscription whose minIntervalMs is
// null or absent (contract 6.2).
const DefaultMinInterval = time.Second

// subscriptionResolver resolves type Subscription.
type subscriptionResolver struct {
	watch   func(ctx context.Context, tenant string, f *engine.Filter) (Watcher, error)
	metrics *liveMetrics
}

// ConnectedUsersIndicatorUpdated resolves
// Subscription.connectedUsersIndicatorUpdated: it watches the filter in the
// engine (watches of equal filters share one view) and sends a value on the
// returned channel when the throttle of contract 6.2 allows it. The channel
// stays open until ctx ends.
func (r *subscriptionResolver) ConnectedUsersIndicatorUpdated(ctx context.Context, args struct {
	Filters       *filtersInput
	MinIntervalMs graphql.NullInt // Value nil: null, which means the default as absent does
}) (<-chan *indicatorResolver, error) {
	tenant, ok := tenantFrom(ctx)
	if !ok {
		return nil, errors.New("api: no tenant in the request context")
	}
	live, ok := ctx.Value(liveKey{}).(*liveOp)
	if !ok { // graphql-go's Exec refuses subscriptions before resolving them
		return nil, errNotSocket
	}
	interval := DefaultMinInterval
	if ms := args.MinIntervalMs.Value; ms != nil {
		if *ms < 0 {
			return nil, &argError{arg: "minIntervalMs", rule: "must not be negative (0 pushes every change), got " +
				strconv.Itoa(int(*ms))}
		}
		interval = time.Duration(*ms) * time.Millisecond
	}
	f, err := args.Filters.filter()
	if err != nil {
		return nil, err
	}
	if err := live.acquire(); err != nil {
		return nil, err
	}
	live.subscription = true
	if hook := live.socket.srv.onFollow; hook != nil {
		hook(interval)
	}
	w, err := r.watch(ctx, tenant, f)
	if err != nil {
		live.release()
		return nil, &unavailableError{}
	}
	out := make(chan *indicatorResolver)
	r.metrics.open.Inc()
	go func() {
		defer live.release()
		defer r.metrics.open.Dec()
		defer w.Close()
		if err := follow(ctx, w, interval, out, live.acks); err != nil {
			// The end of the values ends the operation, with an error.
			live.fail(err)
			close(out)
		}
	}()
	return out, nil
}

// sent is what the socket says of a value a subscription handed over.
type sent struct {
	// at is when the value went out; the zero time when it did not, as
	// the client would have received what it already has.
	at time.Time
	// again asks for the current value once more, changed or not: the
	// last one could not be turned into a message.
	again bool
}

// follow sends on out the values of w that the throttle of contract 6.2
// lets through, until ctx ends, or until w fails: then it returns w's
// error. After each value it waits on acks for what became of it. A value
// that went out starts an interval; the first change after the interval
// goes out at once, and when changes came during the interval the latest
// goes out as it ends. A value not sent starts none.
//
// It reads the engine once per value handed over, never per event: the
// engine closes the channel of Next when the value changes.
func follow(ctx context.Context, w Watcher, interval time.Duration, out chan<- *indicatorResolver, acks <-chan sent) error {
	var last engine.Indicator
	first, again := true, false
	for {
		ind, changed := w.Next()
		if err := w.Err(); err != nil {
			return err
		}
		if !first && !again && ind == last {
			// Nothing new since the last value handed over: wait for a
			// change. A nil channel (a filter that matches nobody) never
			// fires.
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case out <- newIndicator(ind):
		case <-ctx.Done():
			return nil
		}
		first, last = false, ind
		var ack sent
		select {
		case ack = <-acks:
		case <-ctx.Done():
			return nil
		}
		again = ack.again
		if ack.at.IsZero() || interval == 0 {
			continue
		}
		if wait := time.Until(ack.at.Add(interval)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
		}
	}
}
