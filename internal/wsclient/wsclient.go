package wsclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Protocol is the subprotocol Dial asks for.
const Protocol = "graphql-transport-ws"

// Message is one graphql-transport-ws message.
type Message struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
	// At is when the message arrived (received messages only).
	At time.Time `json:"-"`
}

// Options tune Dial.
type Options struct {
	// Header is sent with the upgrade request.
	Header http.Header
	// Subprotocols replaces [Protocol]; an empty non-nil slice asks none.
	Subprotocols []string
	// NoRead leaves the messages unread, as a client that hangs would:
	// Next then never returns one, and the connection's buffers fill.
	NoRead bool
}

// Conn is one client connection.
type Conn struct {
	ws *websocket.Conn

	mu     sync.Mutex
	queue  []Message
	signal chan struct{} // a message arrived or the connection ended
	ended  bool
	err    error // what ended the read loop
}

// Dial opens a WebSocket to url (ws://host/graphql).
func Dial(ctx context.Context, url string, opts *Options) (*Conn, *http.Response, error) {
	if opts == nil {
		opts = &Options{}
	}
	protos := opts.Subprotocols
	if protos == nil {
		protos = []string{Protocol}
	}
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: protos, HTTPHeader: opts.Header})
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(16 << 20)
	c := &Conn{ws: ws, signal: make(chan struct{}, 1)}
	if !opts.NoRead {
		go c.readLoop()
	}
	return c, resp, nil
}

// URL turns an http:// base URL into the ws:// URL of its /graphql.
func URL(base string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/graphql"
}

func (c *Conn) readLoop() {
	for {
		typ, data, err := c.ws.Read(context.Background())
		c.mu.Lock()
		switch {
		case err != nil:
			c.ended, c.err = true, err
		case typ != websocket.MessageText:
			c.queue = append(c.queue, Message{Type: "binary", Payload: data, At: time.Now()})
		default:
			var m Message
			if jerr := json.Unmarshal(data, &m); jerr != nil {
				m = Message{Type: "unparsable", Payload: json.RawMessage(data)}
			}
			m.At = time.Now()
			c.queue = append(c.queue, m)
		}
		c.mu.Unlock()
		select {
		case c.signal <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// ErrTimeout is returned by Next when no message came in time.
var ErrTimeout = errors.New("wsclient: no message in time")

// Next returns the next message, waiting at most timeout. Once the
// connection has ended and every message was taken, it returns the error
// that ended it (see CloseStatus).
func (c *Conn) Next(timeout time.Duration) (Message, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			m := c.queue[0]
			c.queue = c.queue[1:]
			c.mu.Unlock()
			return m, nil
		}
		if c.ended {
			err := c.err
			c.mu.Unlock()
			return Message{}, err
		}
		c.mu.Unlock()
		select {
		case <-c.signal:
		case <-deadline.C:
			return Message{}, ErrTimeout
		}
	}
}

// Pending returns how many received messages Next has not returned yet.
func (c *Conn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Send writes m (a Message or any JSON value) as one text message.
func (c *Conn) Send(ctx context.Context, m any) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.ws.Write(ctx, websocket.MessageText, data)
}

// SendRaw writes data as one text message, as it is.
func (c *Conn) SendRaw(ctx context.Context, data string) error {
	return c.ws.Write(ctx, websocket.MessageText, []byte(data))
}

// Init sends connection_init with payload (nil: none) and waits for
// connection_ack. Any other answer is an error that says what came.
func (c *Conn) Init(ctx context.Context, payload any, timeout time.Duration) error {
	m := map[string]any{"type": "connection_init"}
	if payload != nil {
		m["payload"] = payload
	}
	if err := c.Send(ctx, m); err != nil {
		return err
	}
	got, err := c.Next(timeout)
	if err != nil {
		return err
	}
	if got.Type != "connection_ack" {
		return errors.New("wsclient: want connection_ack, got " + got.Type + " " + string(got.Payload))
	}
	return nil
}

// Subscribe sends a subscribe message.
func (c *Conn) Subscribe(ctx context.Context, id, query string, variables map[string]any) error {
	p := map[string]any{"query": query}
	if variables != nil {
		p["variables"] = variables
	}
	return c.Send(ctx, map[string]any{"id": id, "type": "subscribe", "payload": p})
}

// Complete sends a complete message for id.
func (c *Conn) Complete(ctx context.Context, id string) error {
	return c.Send(ctx, map[string]any{"id": id, "type": "complete"})
}

// Subprotocol is the subprotocol the server chose.
func (c *Conn) Subprotocol() string { return c.ws.Subprotocol() }

// Close closes the connection normally (1000).
func (c *Conn) Close() error { return c.ws.Close(websocket.StatusNormalClosure, "") }

// CloseNow drops the connection without a close handshake.
func (c *Conn) CloseNow() error { return c.ws.CloseNow() }

// CloseStatus returns the close code and reason in err, an error from Next;
// code is -1 when the connection ended without a close frame.
func CloseStatus(err error) (websocket.StatusCode, string) {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Reason
	}
	return -1, ""
}

// WaitClose reads and drops messages until the connection ends, at most
// timeout, and returns the close code and reason (-1 without a close frame,
// -2 when it did not end in time).
func (c *Conn) WaitClose(timeout time.Duration) (websocket.StatusCode, string) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return -2, "still open"
		}
		_, err := c.Next(left)
		if errors.Is(err, ErrTimeout) {
			return -2, "still open"
		}
		if err != nil {
			return CloseStatus(err)
		}
	}
}

// StartReading starts reading the messages of a Conn dialled with NoRead.
func (c *Conn) StartReading() { go c.readLoop() }
