package api

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

const (
	// keepAlive is how often an idle socket is pinged (WebSocket ping
	// frames, which browsers answer by themselves); pongWait is how long
	// the pong may take before the socket is dropped.
	keepAlive = 30 * time.Second
	pongWait  = 20 * time.Second
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

// shut makes add refuse every socket from now on, and returns the open ones.
func (ss *sockets) shut() []*socket {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.closing = true
	open := make([]*socket, 0, len(ss.set))
	for k := range ss.set {
		open = append(open, k)
	}
	return open
}

// shutting reports whether shut was called.
func (ss *sockets) shutting() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.closing
}

func (ss *sockets) remove(k *socket) {
	ss.mu.Lock()
	delete(ss.set, k)
	ss.mu.Unlock()
	ss.wg.Done()
}

// serveSocket serves one GraphQL WebSocket (graphql-transport-ws) until it
// closes.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	if s.sockets.shutting() {
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
