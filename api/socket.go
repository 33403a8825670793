package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	graphql "github.com/graph-gophers/graphql-go"
	gqlerrors "github.com/graph-gophers/graphql-go/errors"

	"github.com/presenced/presenced/presence"
)

// WSProtocol is the WebSocket subprotocol of GET /graphql: graphql-transport-ws,
// the protocol of the npm graphql-ws client (contract 6.2).
const WSProtocol = "graphql-transport-ws"

// Close codes of a GraphQL WebSocket: those of graphql-transport-ws, the
// slow-client code of contract 6.2, and the standard going-away code of a
// shutdown.
const (
	CloseBadMessage      websocket.StatusCode = 4400 // a message that breaks the protocol
	CloseUnauthorized    websocket.StatusCode = 4401 // subscribe before connection_ack
	CloseForbidden       websocket.StatusCode = 4403 // missing or unknown token in connection_init
	CloseSubprotocol     websocket.StatusCode = 4406 // graphql-transport-ws not offered
	CloseInitTimeout     websocket.StatusCode = 4408 // no connection_init in time
	CloseDuplicateID     websocket.StatusCode = 4409 // subscribe with an id in use
	CloseTooManyRequests websocket.StatusCode = 4429 // a second connection_init, or a client that does not read
	CloseGoingAway                            = websocket.StatusGoingAway
)

const (
	// keepAlive is how often an idle socket is pinged (WebSocket ping
	// frames, which browsers answer by themselves); pongWait is how long
	// the pong may take before the socket is dropped.
	keepAlive = 30 * time.Second
	pongWait  = 20 * time.Second
	// maxIDBytes bounds the id of an operation.
	maxIDBytes = 256
	// queueSlack is the room of a socket's outgoing queue beyond one message
	// per subscription: acknowledgements, pongs, query answers.
	queueSlack = 32
)

// Reasons a socket is dropped, the reason label of
// presence_subscription_clients_dropped_total.
const (
	dropSlow        = "slow"
	dropInitTimeout = "init_timeout"
	dropForbidden   = "forbidden"
	dropProtocol    = "protocol"
	dropPingTimeout = "ping_timeout"
)

var dropReasons = []string{dropSlow, dropInitTimeout, dropForbidden, dropProtocol, dropPingTimeout}

// isWebSocket reports an upgrade request (RFC 6455 section 4.1).
func isWebSocket(r *http.Request) bool {
	return hasToken(r.Header, "Connection", "upgrade") && hasToken(r.Header, "Upgrade", "websocket")
}

// hasToken reports whether a comma-separated header lists token.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// sockets is the set of open sockets, for Shutdown.
type sockets struct {
	mu      sync.Mutex
	set     map[*socket]struct{}
	closing bool
	wg      sync.WaitGroup
}

// add registers k; it returns false once Shutdown has begun.
func (ss *sockets) add(k *socket) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closing {
		return false
	}
	if ss.set == nil {
		ss.set = make(map[*socket]struct{})
	}
	ss.set[k] = struct{}{}
	ss.wg.Add(1)
	return true
}

func (ss *sockets) remove(k *socket) {
	ss.mu.Lock()
	delete(ss.set, k)
	ss.mu.Unlock()
	ss.wg.Done()
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

// serveSocket serves one GraphQL WebSocket (graphql-transport-ws) until it
// closes.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	s.sockets.mu.Lock()
	closing := s.sockets.closing
	s.sockets.mu.Unlock()
	if closing {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "api: the server is shutting down")
		return
	}
	// Header values are read before Accept: the request is not to be used
	// once the connection is hijacked.
	tenantHeader, tenantHeaderSet := r.Header[TenantHeader]
	remote := r.RemoteAddr
	// Cross-origin pages are refused (Accept checks Origin against Host):
	// in open mode, a page from elsewhere must not read the numbers.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{WSProtocol}})
	if err != nil {
		s.log.Debug("api: WebSocket upgrade refused", "err", err, "remote", remote)
		return // Accept has answered
	}
	conn.SetReadLimit(MaxBodyBytes)
	ctx, cancel := context.WithCancel(context.Background())
	k := &socket{
		srv:       s,
		conn:      conn,
		remote:    remote,
		header:    tenantHeader,
		headerSet: tenantHeaderSet,
		ctx:       ctx,
		cancel:    cancel,
		out:       make(chan outgoing, s.cfg.SubscriptionsPerSocket+queueSlack),
		closed:    make(chan struct{}),
		ops:       make(map[string]*operation),
	}
	if !s.sockets.add(k) {
		k.close(CloseGoingAway, "server shutting down", "")
		<-k.closed
		return
	}
	defer s.sockets.remove(k)
	s.live.sockets.Inc()
	defer s.live.sockets.Dec()
	k.run()
}

// socket is one GraphQL WebSocket. Its reader (run) handles the client's
// messages in order; one writer goroutine writes the messages queued on out;
// each operation has a goroutine that turns its GraphQL responses into
// messages.
type socket struct {
	srv       *Server
	conn      *websocket.Conn
	remote    string
	header    []string // X-Tenant-Id of the upgrade request
	headerSet bool

	// ctx ends when the socket closes, and with it every operation.
	ctx    context.Context
	cancel context.CancelFunc
	out    chan outgoing

	closeOnce sync.Once
	closed    chan struct{} // closed once the close handshake is over

	// Owned by the reader.
	initReceived bool
	id           identity

	acked atomic.Bool
	subs  atomic.Int32 // subscriptions open on this socket

	mu  sync.Mutex
	ops map[string]*operation
	wg  sync.WaitGroup // the operations' goroutines
}

// outgoing is one message to write. done, when set, is closed once the
// message is written.
type outgoing struct {
	data []byte
	done chan struct{}
}

// operation is one subscribe message being answered.
type operation struct {
	id     string
	cancel context.CancelFunc
}

// run reads and handles the client's messages until the socket closes, then
// waits for its goroutines.
func (k *socket) run() {
	if k.conn.Subprotocol() != WSProtocol {
		k.close(CloseSubprotocol, "Subprotocol not acceptable: use "+WSProtocol, dropProtocol)
		<-k.closed
		return
	}
	initTimer := time.AfterFunc(k.srv.cfg.InitTimeout, func() {
		if !k.acked.Load() {
			k.close(CloseInitTimeout, "Connection initialisation timeout", dropInitTimeout)
		}
	})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		k.writeLoop()
	}()

	for {
		// No deadline: the socket lives until a close. Read fails once
		// the connection is closed, by either side.
		typ, data, err := k.conn.Read(context.Background())
		if err != nil {
			break
		}
		if k.ctx.Err() != nil {
			continue // closing: read on until the close handshake is over
		}
		if typ != websocket.MessageText {
			k.close(CloseBadMessage, "Invalid message received: binary frame", dropProtocol)
			continue
		}
		k.handle(data)
	}
	initTimer.Stop()
	k.closeNow()
	<-k.closed
	<-writerDone
	k.wg.Wait()
}

// close ends the socket with code: operations stop at once, the close frame
// goes out after the message being written, if any. A non-empty drop is the
// reason label of a client dropped. Only the first call has an effect.
func (k *socket) close(code websocket.StatusCode, reason, drop string) {
	k.closeOnce.Do(func() {
		if drop != "" {
			k.srv.live.dropped.WithLabelValues(drop).Inc()
			k.srv.log.Debug("api: WebSocket closed", "code", int(code), "reason", reason, "remote", k.remote)
		}
		k.cancel()
		go func() {
			defer close(k.closed)
			// Close waits at most 5 s to write the close frame and 5 s
			// for the client's, then closes the connection.
			k.conn.Close(code, truncate(reason, 123))
		}()
	})
}

// closeNow ends a socket whose connection is gone.
func (k *socket) closeNow() {
	k.closeOnce.Do(func() {
		k.cancel()
		k.conn.CloseNow()
		close(k.closed)
	})
}

// truncate cuts s to at most n bytes on a rune boundary (a close reason is
// at most 123 bytes).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// writeLoop writes the queued messages until the socket closes. A write that
// takes longer than SocketWriteTimeout is a client that does not read: it
// is dropped, and never blocks anyone else.
func (k *socket) writeLoop() {
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-k.ctx.Done():
			return
		case m := <-k.out:
			stall := time.AfterFunc(k.srv.cfg.SocketWriteTimeout, func() {
				k.close(CloseTooManyRequests, "slow client: a message was not read in "+
					k.srv.cfg.SocketWriteTimeout.String(), dropSlow)
			})
			err := k.conn.Write(context.Background(), websocket.MessageText, m.data)
			stall.Stop()
			if err != nil {
				k.closeNow()
				return
			}
			if m.done != nil {
				close(m.done)
			}
		case <-ping.C:
			go func() {
				// Not k.ctx: a ping write cut short by it would tear the
				// connection down before the close frame.
				ctx, cancel := context.WithTimeout(context.Background(), pongWait)
				defer cancel()
				if err := k.conn.Ping(ctx); err != nil && k.ctx.Err() == nil {
					k.close(websocket.StatusPolicyViolation, "no pong in "+pongWait.String(), dropPingTimeout)
				}
			}()
		}
	}
}

// send queues m. A full queue is a client that does not read: it is dropped
// and send returns false, as it does once the socket is closing.
func (k *socket) send(m outgoing) bool {
	if k.ctx.Err() != nil {
		return false
	}
	select {
	case k.out <- m:
		return true
	default:
		k.close(CloseTooManyRequests, "slow client: outgoing queue full", dropSlow)
		return false
	}
}

// message is a graphql-transport-ws message as the server writes it.
type message struct {
	ID      string `json:"id,omitempty"`
	Type    string `json:"type"`
	Payload any    `json:"payload,omitempty"`
}

func (k *socket) sendMessage(m message) bool {
	data, err := json.Marshal(m)
	if err != nil { // a bug: every payload is JSON
		k.srv.log.Error("api: encoding a WebSocket message", "err", err)
		return false
	}
	return k.send(outgoing{data: data})
}

// inMessage is a graphql-transport-ws message as a client writes it.
type inMessage struct {
	Type    string          `json:"type"`
	ID      *string         `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

// subscribePayload is the payload of a subscribe message.
type subscribePayload struct {
	Query         *string        `json:"query"`
	OperationName *string        `json:"operationName"`
	Variables     map[string]any `json:"variables"`
	Extensions    map[string]any `json:"extensions"`
}

// handle acts on one message of the client.
func (k *socket) handle(data []byte) {
	bad := func(rule string) { k.close(CloseBadMessage, "Invalid message received: "+rule, dropProtocol) }
	var m inMessage
	if err := json.Unmarshal(data, &m); err != nil {
		bad("want a JSON object {type, id, payload}")
		return
	}
	switch m.Type {
	case "connection_init":
		if k.initReceived {
			k.close(CloseTooManyRequests, "Too many initialisation requests", dropProtocol)
			return
		}
		k.initReceived = true
		if !isObject(m.Payload) {
			bad("connection_init: payload must be an object")
			return
		}
		id, code, reason := k.authenticate(m.Payload)
		if code != 0 {
			drop := dropProtocol
			if code == CloseForbidden {
				drop = dropForbidden
			}
			k.close(code, reason, drop)
			return
		}
		k.id = id
		k.acked.Store(true)
		k.sendMessage(message{Type: "connection_ack"})
	case "ping":
		if !isObject(m.Payload) {
			bad("ping: payload must be an object")
			return
		}
		pong := message{Type: "pong"}
		if len(m.Payload) > 0 && !bytes.Equal(m.Payload, []byte("null")) {
			pong.Payload = m.Payload
		}
		k.sendMessage(pong)
	case "pong":
		// An answer to a ping of ours, or a unidirectional heartbeat.
	case "subscribe":
		if !k.acked.Load() {
			k.close(CloseUnauthorized, "Unauthorized", dropProtocol)
			return
		}
		if m.ID == nil || *m.ID == "" || len(*m.ID) > maxIDBytes {
			bad("subscribe: id must be a string of 1 to " + strconv.Itoa(maxIDBytes) + " bytes")
			return
		}
		var p subscribePayload
		if !isObject(m.Payload) || len(m.Payload) == 0 || json.Unmarshal(m.Payload, &p) != nil {
			bad("subscribe: payload must be an object {query, operationName, variables, extensions}")
			return
		}
		if p.Query == nil {
			bad("subscribe: payload.query is required")
			return
		}
		k.subscribe(*m.ID, p)
	case "complete":
		if m.ID == nil || *m.ID == "" {
			bad("complete: id is required")
			return
		}
		k.mu.Lock()
		op := k.ops[*m.ID]
		delete(k.ops, *m.ID)
		k.mu.Unlock()
		if op != nil {
			op.cancel() // the client stopped listening: no complete goes back
		}
	default:
		bad("unknown type " + strconv.Quote(truncate(m.Type, 32)))
	}
}

// isObject reports whether raw is absent, null or a JSON object.
func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null")) || raw[0] == '{'
}

// authenticate resolves the identity of a connection_init payload by
// contract 6.2: in token mode the payload's Authorization (key matched
// case-insensitively) carries the bearer token; in open mode the tenant is
// the payload's X-Tenant-Id, else the upgrade request's, else "default".
// On failure it returns the close code and reason.
func (k *socket) authenticate(payload json.RawMessage) (identity, websocket.StatusCode, string) {
	var fields map[string]json.RawMessage
	if len(bytes.TrimSpace(payload)) > 0 {
		if err := json.Unmarshal(payload, &fields); err != nil {
			return identity{}, CloseBadMessage, "Invalid message received: connection_init: payload must be an object"
		}
	}
	s := k.srv
	if s.tokens != nil {
		v, found, ok := stringField(fields, "Authorization")
		if !ok {
			return identity{}, CloseBadMessage, "Invalid message received: connection_init: Authorization given more than once"
		}
		token, hasToken := bearer(v)
		if !found || !hasToken {
			s.log.Debug("api: WebSocket refused", "reason", reasonNoToken, "remote", k.remote)
			return identity{}, CloseForbidden, "Forbidden: connection_init payload needs Authorization: Bearer <token>"
		}
		e, known := s.tokens.lookup(token)
		if !known {
			level := slog.LevelDebug
			if s.refusals.Allow() {
				level = slog.LevelWarn
			}
			s.log.Log(context.Background(), level, "api: WebSocket refused", "reason", reasonUnknownToken, "remote", k.remote)
			return identity{}, CloseForbidden, "Forbidden: unknown bearer token"
		}
		return identity{tenant: e.tenant, limiter: e.key}, 0, ""
	}
	v, found, ok := stringField(fields, TenantHeader)
	if !ok {
		return identity{}, CloseBadMessage, "Invalid message received: connection_init: " + TenantHeader + " given more than once"
	}
	if !found && k.headerSet {
		if len(k.header) != 1 {
			return identity{}, CloseBadMessage, "Invalid message received: " + TenantHeader + " header: must be given once"
		}
		v, found = k.header[0], true
	}
	if !found {
		return identity{tenant: DefaultTenant, limiter: "tenant:" + DefaultTenant}, 0, ""
	}
	t := strings.TrimSpace(v)
	if !presence.ValidTenant(t) {
		return identity{}, CloseBadMessage, "Invalid message received: " + TenantHeader + ": " + tenantRule
	}
	return identity{tenant: t, limiter: "tenant:" + t}, 0, ""
}

// stringField finds the key of fields equal to name, case-insensitively.
// found is false when there is none or its value is not a string; ok is
// false when several keys match.
func stringField(fields map[string]json.RawMessage, name string) (v string, found, ok bool) {
	var keys []string
	for key := range fields {
		if strings.EqualFold(key, name) {
			keys = append(keys, key)
		}
	}
	switch len(keys) {
	case 0:
		return "", false, true
	case 1:
	default:
		return "", false, false
	}
	if err := json.Unmarshal(fields[keys[0]], &v); err != nil {
		return "", false, true
	}
	return v, true, true
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
	if ok, wait := k.srv.limits.allow(k.id.limiter, time.Now()); !ok {
		secs := max(1, int(wait.Seconds()+0.999))
		k.sendErrors(id, []*gqlerrors.QueryError{{
			Message: "api: rate limit exceeded (" + strconv.FormatFloat(float64(k.srv.cfg.RateLimit), 'g', -1, 64) +
				" requests/s); retry after " + strconv.Itoa(secs) + "s",
			Extensions: map[string]any{"code": "RATE_LIMITED", "retryAfterSeconds": secs},
		}})
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
	ctx, cancel := context.WithCancel(k.ctx)
	op := &operation{id: id, cancel: cancel}
	live := &liveOp{acks: make(chan sent, 1), socket: k}
	ctx = context.WithValue(withTenant(ctx, k.id.tenant), liveKey{}, live)
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
				k.sendMessage(message{ID: op.id, Type: "complete"})
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

// subscriptionLimitError is the GraphQL error of a subscription over a
// limit of Config.
type subscriptionLimitError struct {
	per   string // "WebSocket", "token" or "tenant"
	limit int
}

func (e *subscriptionLimitError) Error() string {
	return "api: subscriptions: at most " + strconv.Itoa(e.limit) + " open per " + e.per
}

// Extensions is read by graphql-go into the error's "extensions" entry.
func (e *subscriptionLimitError) Extensions() map[string]any {
	return map[string]any{"code": "LIMIT_EXCEEDED", "limit": e.limit, "per": e.per}
}

var errNotSocket = errors.New("api: subscriptions are served over WebSocket at /graphql with the " + WSProtocol + " protocol")
