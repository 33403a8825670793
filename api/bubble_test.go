package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/internal/wsclient"
)

// This file serves an api.Server inside a synctest bubble, where time is
// fake: a test asserts exact instants, and a machine however loaded cannot
// move them. Network I/O is not durably blocking, so the Server's http.Server
// and its clients talk over net.Pipe connections, which are: a client that
// does not read blocks the Server's write for good, as a full TCP window
// would.

// pipeListener is a net.Listener whose connections are net.Pipes made by
// dial.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial is the DialContext of the clients' http.Transport.
func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// bubble is an api.Server served on a pipeListener by the http.Server of
// Server.HTTPServer, and an http.Client that reaches it.
type bubble struct {
	srv    *api.Server
	client *http.Client
}

// newBubble serves a Server of cfg (without a rate limit unless cfg sets
// one, logging nowhere unless it says where) until the test ends. It must be
// called inside the bubble of synctest.Test.
func newBubble(t *testing.T, cfg api.Config) *bubble {
	t.Helper()
	s, err := api.New(testConfig(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	ln := newPipeListener()
	hs := s.HTTPServer("pipe")
	go hs.Serve(ln)
	tr := &http.Transport{DialContext: ln.dial}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s.Shutdown(ctx)
		hs.Close()
		tr.CloseIdleConnections()
	})
	return &bubble{srv: s, client: &http.Client{Transport: tr}}
}

// post sends a GraphQL request over HTTP, as query does over the network.
func (b *bubble) post(t *testing.T, q string, headers ...string) *gqlResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": q})
	req, err := http.NewRequest(http.MethodPost, "http://pipe/graphql", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	res, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := &gqlResponse{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if err := json.Unmarshal([]byte(out.raw), out); err != nil {
		t.Fatalf("%d %s: %v", out.status, out.raw, err)
	}
	return out
}

// pipeClient is a graphql-transport-ws client over a pipe. Its reader, once
// started, stamps each message with the (fake) time it arrived.
type pipeClient struct {
	t   *testing.T
	ws  *websocket.Conn
	in  chan wsclient.Message
	end chan struct{} // closed when the reader stops; err says why
	err error
}

// waitLimit bounds, in fake time, how long next waits for a message: past
// it nothing was coming (a ticker would otherwise move time on forever).
const waitLimit = time.Minute

// dial opens a WebSocket to GET /graphql with header. A client dialled with
// read false reads nothing until startReading: a client that hangs.
func (b *bubble) dial(t *testing.T, header http.Header, read bool) *pipeClient {
	t.Helper()
	ws, _, err := websocket.Dial(t.Context(), "ws://pipe/graphql", &websocket.DialOptions{
		HTTPClient: b.client, HTTPHeader: header, Subprotocols: []string{api.WSProtocol}})
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(16 << 20)
	c := &pipeClient{t: t, ws: ws, in: make(chan wsclient.Message, 1<<14), end: make(chan struct{})}
	t.Cleanup(func() { c.ws.CloseNow() })
	if read {
		c.startReading()
	}
	return c
}

// acked dials and completes connection_init with payload (nil: none).
func (b *bubble) acked(t *testing.T, payload any) *pipeClient {
	t.Helper()
	c := b.dial(t, nil, true)
	c.init(payload)
	return c
}

// init sends connection_init with payload (nil: none) and waits for
// connection_ack.
func (c *pipeClient) init(payload any) {
	c.t.Helper()
	m := map[string]any{"type": "connection_init"}
	if payload != nil {
		m["payload"] = payload
	}
	c.send(m)
	if got := c.next(); got.Type != "connection_ack" {
		c.t.Fatalf("want connection_ack, got %s %s", got.Type, got.Payload)
	}
}

func (c *pipeClient) startReading() {
	go func() {
		defer close(c.end)
		for {
			typ, data, err := c.ws.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			m := wsclient.Message{Type: "binary", Payload: data}
			if typ == websocket.MessageText && json.Unmarshal(data, &m) != nil {
				m = wsclient.Message{Type: "unparsable", Payload: data}
			}
			m.At = time.Now()
			c.in <- m
		}
	}()
}

func (c *pipeClient) send(m any) {
	c.t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ws.Write(context.Background(), websocket.MessageText, data); err != nil {
		c.t.Fatal(err)
	}
}

func (c *pipeClient) subscribe(id, query string, vars map[string]any) {
	c.t.Helper()
	p := map[string]any{"query": query}
	if vars != nil {
		p["variables"] = vars
	}
	c.send(map[string]any{"id": id, "type": "subscribe", "payload": p})
}

// next waits for the next message, moving fake time on if it must.
func (c *pipeClient) next() wsclient.Message {
	c.t.Helper()
	select {
	case m := <-c.in:
		return m
	case <-c.end:
		select {
		case m := <-c.in:
			return m
		default:
		}
		c.t.Fatalf("connection ended waiting for a message: %v", c.err)
	case <-time.After(waitLimit):
		c.t.Fatalf("no message in %v", waitLimit)
	}
	return wsclient.Message{}
}

// nextOf is next, which must be of type typ for id.
func (c *pipeClient) nextOf(id, typ string) wsclient.Message {
	c.t.Helper()
	m := c.next()
	if m.ID != id || m.Type != typ {
		c.t.Fatalf("want %s %s, got %s %s %s", typ, id, m.Type, m.ID, m.Payload)
	}
	return m
}

// quiet checks that nothing arrived by now, once every goroutine of the
// bubble is blocked: whatever the Server does at this instant is done.
func (c *pipeClient) quiet() {
	c.t.Helper()
	synctest.Wait()
	select {
	case m := <-c.in:
		c.t.Fatalf("at %v: want no message, got %s %s %s", time.Now(), m.Type, m.ID, m.Payload)
	default:
	}
}

// open checks that the connection has not ended by now.
func (c *pipeClient) open() {
	c.t.Helper()
	synctest.Wait()
	select {
	case <-c.end:
		c.t.Fatalf("at %v: the connection ended: %v", time.Now(), c.err)
	default:
	}
}

// waitClose reads on until the connection ends and returns its close code
// and reason (-1 without a close frame).
func (c *pipeClient) waitClose() (websocket.StatusCode, string) {
	c.t.Helper()
	for {
		select {
		case <-c.in:
		case <-c.end:
			var ce websocket.CloseError
			if errors.As(c.err, &ce) {
				return ce.Code, ce.Reason
			}
			return -1, ""
		case <-time.After(waitLimit):
			c.t.Fatalf("still open after %v", waitLimit)
		}
	}
}
