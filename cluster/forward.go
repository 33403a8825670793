package cluster

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
)

// Headers of a forwarded request and its answer. The subject's last token
// is the request's kind (api.KindGraphQL, api.KindHistory, KindWatch).
const (
	headerTenant      = "Presenced-Tenant"
	headerAccept      = "Accept"
	headerStatus      = "Presenced-Status"
	headerContentType = "Content-Type"
	headerRetryAfter  = "Retry-After"
)

// UnavailableAfter is how long a request waits for a holder of its
// tenant's partition that is caught up (contract section 7): then it is
// answered 503 UNAVAILABLE, never with a wrong number.
const UnavailableAfter = 2 * time.Second

// ErrUnavailable is returned when no caught-up holder answered within
// UnavailableAfter: the api's, which answers 503 UNAVAILABLE.
var ErrUnavailable = api.ErrUnavailable

// Executor answers the requests forwarded to this instance, from its own
// state: the api's server does.
type Executor interface {
	ServeForwarded(ctx context.Context, req api.ForwardRequest) api.Forwarded
}

// subject is where the holders of partition p of stream take requests of
// kind.
func subject(stream string, p int, kind string) string {
	return "presenced." + stream + ".p" + strconv.Itoa(p) + "." + kind
}

// codeNotHeld is the error code of the answer of an instance that stopped
// serving the partition while the request was on its way: the forwarder
// then asks the others.
const codeNotHeld = "503"

// serving is the micro service of one partition this instance answers for:
// registered once the partition is caught up, stopped when it is not or no
// longer held. Holders of a partition share a queue group, so each request
// reaches one of them.
type serving struct {
	svc micro.Service

	mu       sync.Mutex
	stopped  bool
	inFlight sync.WaitGroup // requests being answered
}

// serve registers the endpoints of partition p: requests answered by exec,
// and, with eng, watches of eng relayed to other instances.
func serve(ctx context.Context, nc *nats.Conn, stream, instance string, p int, exec Executor, eng *engine.Engine) (*serving, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name:        "presenced",
		Version:     "1.0.0",
		Description: "answers for the tenants of one partition of stream " + stream,
		Metadata:    map[string]string{"stream": stream, "partition": strconv.Itoa(p), "instance": instance},
		QueueGroup:  "presenced",
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: serving partition %d: %w", p, err)
	}
	s := &serving{svc: svc}
	answer := micro.HandlerFunc(func(req micro.Request) {
		s.mu.Lock()
		if s.stopped { // delivered while the subscription drains
			s.mu.Unlock()
			_ = req.Error(codeNotHeld, "partition no longer served here", nil)
			return
		}
		s.inFlight.Add(1)
		s.mu.Unlock()
		defer s.inFlight.Done()
		kind := req.Subject()[strings.LastIndexByte(req.Subject(), '.')+1:]
		a := exec.ServeForwarded(ctx, api.ForwardRequest{Kind: kind, Tenant: req.Headers().Get(headerTenant),
			Accept: req.Headers().Get(headerAccept), Body: req.Data()})
		h := micro.Headers{headerStatus: {strconv.Itoa(a.Status)}, headerContentType: {a.ContentType}}
		if a.RetryAfter != "" {
			h[headerRetryAfter] = []string{a.RetryAfter}
		}
		_ = req.Respond(a.Body, micro.WithHeaders(h))
	})
	// Each request is answered on the goroutine its subscription delivers
	// it on: handing it to a goroutine of its own added ~20 µs to each
	// (BenchmarkForward), the wake-up of a thread on another core. So that
	// requests of one partition still run side by side, each kind has as
	// many endpoints as the process has cores, all on the kind's subject
	// and in the queue group, each answering one request at a time.
	for _, kind := range []string{api.KindGraphQL, api.KindHistory} {
		for i := range runtime.GOMAXPROCS(0) {
			name := kind
			if i > 0 {
				name += "-" + strconv.Itoa(i+1)
			}
			if err := svc.AddEndpoint(name, answer, micro.WithEndpointSubject(subject(stream, p, kind))); err != nil {
				_ = svc.Stop()
				return nil, fmt.Errorf("cluster: serving partition %d: %w", p, err)
			}
		}
	}
	if eng != nil {
		if err := serveWatches(ctx, svc, nc, stream, p, eng); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("cluster: serving partition %d: %w", p, err)
		}
	}
	return s, nil
}

// stop stops serving and waits for the requests being answered: once it
// returns, nothing more is answered from the partition's state here, so
// the partition may be let go of.
func (s *serving) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	_ = s.svc.Stop()
	s.inFlight.Wait()
}

// forwarder sends requests to the holders of a partition.
type forwarder struct {
	nc     *nats.Conn
	stream string
	count  func(result string)

	// The answers of every request come to one wildcard subscription,
	// made at the first request, and go to the request by the last token
	// of their subject (as nats.go's own requests do): a subscription per
	// request would cost a SUB and an UNSUB, each sent to every other
	// server of a NATS cluster.
	inboxOnce sync.Once
	inbox     string // the prefix; a request's inbox is inbox.<n>
	inboxErr  error
	mu        sync.Mutex
	next      uint64
	waiting   map[string]chan *nats.Msg
}

// awaitAnswers returns an inbox of its own for one request, the channel its
// answers come to, and the function that lets the inbox go.
func (f *forwarder) awaitAnswers() (string, <-chan *nats.Msg, func(), error) {
	f.inboxOnce.Do(func() {
		f.inbox = f.nc.NewRespInbox()
		f.waiting = map[string]chan *nats.Msg{}
		_, f.inboxErr = f.nc.Subscribe(f.inbox+".*", func(m *nats.Msg) {
			f.mu.Lock()
			ch := f.waiting[m.Subject]
			f.mu.Unlock()
			select {
			case ch <- m: // nil when the request has ended: dropped
			default:
			}
		})
	})
	if f.inboxErr != nil {
		return "", nil, nil, f.inboxErr
	}
	f.mu.Lock()
	f.next++
	inbox := f.inbox + "." + strconv.FormatUint(f.next, 36)
	ch := make(chan *nats.Msg, 4)
	f.waiting[inbox] = ch
	f.mu.Unlock()
	return inbox, ch, func() {
		f.mu.Lock()
		delete(f.waiting, inbox)
		f.mu.Unlock()
	}, nil
}

// forward sends req, of a tenant of partition p, to a caught-up holder and
// returns its answer, retrying while none answers, for at most
// UnavailableAfter; then ErrUnavailable.
func (f *forwarder) forward(ctx context.Context, p int, req api.ForwardRequest) (api.Forwarded, error) {
	msg := nats.NewMsg(subject(f.stream, p, req.Kind))
	msg.Header.Set(headerTenant, req.Tenant)
	if req.Accept != "" {
		msg.Header.Set(headerAccept, req.Accept)
	}
	msg.Data = req.Body
	reply, err := f.request(ctx, p, msg)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			f.count("unavailable")
		} else {
			f.count("error")
		}
		return api.Forwarded{}, err
	}
	status, err := strconv.Atoi(reply.Header.Get(headerStatus))
	if err != nil {
		f.count("error")
		return api.Forwarded{}, fmt.Errorf("cluster: a holder of partition %d answered with no status", p)
	}
	f.count("ok")
	return api.Forwarded{Status: status, ContentType: reply.Header.Get(headerContentType),
		RetryAfter: reply.Header.Get(headerRetryAfter), Body: reply.Data}, nil
}
