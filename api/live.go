package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	graphql "github.com/graph-gophers/graphql-go"
	gqlerrors "github.com/graph-gophers/graphql-go/errors"
)

// operation is one subscribe message being answered.
type operation struct {
	id     string
	cancel context.CancelFunc
}

// subscribe starts the operation of a subscribe message: a subscription
// streams until it is completed, a query is answered by one next and a
// complete. Both go through graphql-go's Subscribe, which validates the
// document and resolves the values, with the variables coerceVariables
// gives (Subscribe fills in no default).
func (k *socket) subscribe(id string, p subscribePayload) {
	k.mu.Lock()
	_, dup := k.ops[id]
	k.mu.Unlock()
	if dup {
		k.close(CloseDuplicateID, "Subscriber for "+truncate(id, 64)+" already exists", dropProtocol)
		return
	}
	if refused := k.srv.takeRequest(k.id, time.Now()); refused != nil {
		k.sendErrors(id, []*gqlerrors.QueryError{refused.queryError()})
		return
	}
	opName := ""
	if p.OperationName != nil {
		opName = *p.OperationName
	}
	vars, verr := coerceVariables(k.srv.schema.AST(), *p.Query, opName, p.Variables)
	if verr != nil {
		k.sendErrors(id, []*gqlerrors.QueryError{verr})
		return
	}
	// A query of a tenant held elsewhere is answered there; a
	// subscription runs here, its watch relayed from a holder.
	eng, local := k.srv.engineFor(k.id.tenant)
	if !local && operationKind(*p.Query, opName) != "subscription" {
		k.wg.Go(func() { k.forwardQuery(id, p) })
		return
	}
	ctx, cancel := context.WithCancel(k.ctx)
	op := &operation{id: id, cancel: cancel}
	live := &liveOp{acks: make(chan sent, 1), socket: k}
	ctx = context.WithValue(withExec(ctx, &execInfo{tenant: k.id.tenant, engine: eng}), liveKey{}, live)
	k.mu.Lock()
	k.ops[id] = op
	k.mu.Unlock()
	responses, err := k.srv.schema.Subscribe(ctx, *p.Query, opName, vars)
	if err != nil { // the schema has a Subscription type: never
		k.forget(op)
		k.sendErrors(id, []*gqlerrors.QueryError{{Message: "api: " + err.Error()}})
		return
	}
	k.wg.Go(func() { k.stream(ctx, op, responses, live) })
}

// forwardQuery answers a query of the socket whose tenant is held
// elsewhere: the holder answers it as over HTTP, and its answer becomes a
// next and a complete, or an error message.
func (k *socket) forwardQuery(id string, p subscribePayload) {
	body, _ := json.Marshal(struct {
		Query         string         `json:"query"`
		Variables     map[string]any `json:"variables,omitempty"`
		OperationName *string        `json:"operationName,omitempty"`
	}{*p.Query, p.Variables, p.OperationName})
	ctx, cancel := context.WithTimeout(k.ctx, k.srv.cfg.QueryTimeout)
	defer cancel()
	a, err := k.srv.cfg.Router.Forward(ctx, ForwardRequest{Kind: KindGraphQL, Tenant: k.id.tenant, Accept: mediaJSON, Body: body})
	var resp struct {
		Data   json.RawMessage `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err != nil || json.Unmarshal(a.Body, &resp) != nil {
		k.sendErrors(id, []*gqlerrors.QueryError{{Message: unavailable, Extensions: map[string]any{"code": "UNAVAILABLE"}}})
		return
	}
	if len(resp.Data) == 0 || string(resp.Data) == "null" {
		// No data: the request could not execute; its errors, as the
		// socket sends them.
		k.sendMessage(message{ID: id, Type: "error", Payload: resp.Errors})
		return
	}
	k.sendMessage(message{ID: id, Type: "next", Payload: json.RawMessage(a.Body)})
	k.sendMessage(message{ID: id, Type: "complete"})
}

// forget removes op from the socket's operations, if it is still there
// (the client may have completed it and reused its id), and ends it.
func (k *socket) forget(op *operation) {
	k.mu.Lock()
	if k.ops[op.id] == op {
		delete(k.ops, op.id)
	}
	k.mu.Unlock()
	op.cancel()
}

func (k *socket) sendErrors(id string, errs []*gqlerrors.QueryError) {
	for _, e := range errs {
		// graphql-go's Subscribe leaves out the extensions of a resolver's
		// error; its Exec does not.
		var x interface{ Extensions() map[string]any }
		if e.Extensions == nil && errors.As(e.ResolverError, &x) {
			e.Extensions = x.Extensions()
		}
	}
	k.sendMessage(message{ID: id, Type: "error", Payload: errs})
}

// stream turns the responses of one operation into messages: a response
// that could not execute (errors, no data) into an error message; others
// into next messages, each only when it differs from the last one sent
// (contract 6.2: push when what the client would receive differs); the end
// of the responses into complete, unless the client completed it first.
// After each response it tells the subscription, through live.sent, when the
// message went out, so that the throttle's interval starts then.
func (k *socket) stream(ctx context.Context, op *operation, responses <-chan any, live *liveOp) {
	defer k.forget(op)
	tell := func(a sent) {
		select {
		case live.acks <- a:
		default: // a query: nobody listens
		}
	}
	var last []byte
	first := true
	for {
		var r any
		var ok bool
		select {
		case r, ok = <-responses:
		case <-ctx.Done():
			return
		}
		if !ok {
			if ctx.Err() == nil {
				k.forget(op) // before complete: the client may reuse the id at once
				if live.hasFailed() {
					k.sendErrors(op.id, []*gqlerrors.QueryError{{Message: unavailable,
						Extensions: map[string]any{"code": "UNAVAILABLE"}}})
				} else {
					k.sendMessage(message{ID: op.id, Type: "complete"})
				}
			}
			return
		}
		resp, _ := r.(*graphql.Response)
		if resp == nil {
			continue
		}
		if resp.Data == nil && len(resp.Errors) > 0 {
			if first {
				k.forget(op)
				k.sendErrors(op.id, resp.Errors)
				return
			}
			// graphql-go gave up on a value (its resolve timeout): ask for
			// it again rather than leave the client on an older one.
			k.srv.log.Warn("api: a subscription value failed; asking again", "err", resp.Errors[0].Message)
			tell(sent{again: true})
			continue
		}
		payload, err := json.Marshal(resp)
		if err != nil {
			k.srv.log.Error("api: encoding a GraphQL response", "err", err)
			return
		}
		if !first && bytes.Equal(payload, last) {
			tell(sent{})
			continue
		}
		data, _ := json.Marshal(message{ID: op.id, Type: "next", Payload: json.RawMessage(payload)})
		m := outgoing{data: data, done: make(chan struct{})}
		if !k.send(m) {
			return
		}
		select {
		case <-m.done:
		case <-ctx.Done():
			return
		}
		if live.subscription {
			k.srv.live.messages.Inc()
		}
		first, last = false, payload
		tell(sent{at: time.Now()})
	}
}

// liveKey carries the *liveOp of an operation in its context.
type liveKey struct{}

// liveOp links a subscription's resolver to the socket operation that sends
// its values. The resolver hands graphql-go one value at a time; once the
// operation has turned it into a message and written it, or found that it
// shows the client nothing new, it says so on acks. The resolver never runs
// ahead of the socket: a client that reads slowly holds one value, never a
// queue.
type liveOp struct {
	acks         chan sent
	socket       *socket
	subscription bool // set by the resolver before it returns

	mu     sync.Mutex
	failed bool // the watch could not go on: end with an error, not complete
}

// fail records that the subscription's watch could not go on (no instance
// holds its tenant's partition now): the operation ends with an error
// message rather than complete.
func (l *liveOp) fail(error) {
	l.mu.Lock()
	l.failed = true
	l.mu.Unlock()
}

func (l *liveOp) hasFailed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// acquire takes a subscription slot of the socket and of its client; the
// error names the limit reached.
func (l *liveOp) acquire() error {
	k := l.socket
	cfg := &k.srv.cfg
	if n := k.subs.Add(1); int(n) > cfg.SubscriptionsPerSocket {
		k.subs.Add(-1)
		return &subscriptionLimitError{per: "WebSocket", limit: cfg.SubscriptionsPerSocket}
	}
	if !k.srv.clients.acquire(k.id.limiter, cfg.SubscriptionsPerClient) {
		k.subs.Add(-1)
		per := "token"
		if k.srv.tokens == nil {
			per = "tenant"
		}
		return &subscriptionLimitError{per: per, limit: cfg.SubscriptionsPerClient}
	}
	return nil
}

func (l *liveOp) release() {
	l.socket.subs.Add(-1)
	l.socket.srv.clients.release(l.socket.id.limiter)
}

// clientSlots counts the subscriptions of each client (a token, or a tenant
// in open mode) over all its sockets.
type clientSlots struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *clientSlots) acquire(key string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]int)
	}
	if c.n[key] >= limit {
		return false
	}
	c.n[key]++
	return true
}

func (c *clientSlots) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key]--; c.n[key] <= 0 {
		delete(c.n, key)
	}
}
