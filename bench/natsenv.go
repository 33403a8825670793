package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/ingest"
)

// natsEnv is an embedded NATS server with the event stream, on a random
// loopback port, with its store in a temporary directory; or, from dialNATS,
// a connection to another process's.
type natsEnv struct {
	srv    *server.Server
	url    string
	prefix string // of the subjects the stream captures
	dir    string
	nc     *nats.Conn // the publishers' connection
	js     jetstream.JetStream
	stream jetstream.Stream
}

func startNATS(ctx context.Context) (*natsEnv, error) {
	dir, err := os.MkdirTemp("", "presencebench-nats-")
	if err != nil {
		return nil, err
	}
	env := &natsEnv{dir: dir, prefix: ingest.DefaultPrefix}
	env.srv, env.url, err = ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		env.close()
		return nil, err
	}
	if env.nc, env.js, err = jetStream(env.url); err != nil {
		env.close()
		return nil, err
	}
	// The configuration the ingester gives the stream when it creates it.
	env.stream, err = env.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     ingest.DefaultStream,
		Subjects: []string{env.prefix + ".*.*"},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		env.close()
		return nil, fmt.Errorf("creating the stream: %w", err)
	}
	return env, nil
}

// dialNATS connects to a running server, such as presenced's embedded one,
// whose event stream exists, capturing the subjects under prefix.
func dialNATS(ctx context.Context, url, stream, prefix string) (*natsEnv, error) {
	env := &natsEnv{url: url, prefix: prefix}
	var err error
	if env.nc, env.js, err = jetStream(url); err != nil {
		return nil, err
	}
	if env.stream, err = env.js.Stream(ctx, stream); err != nil {
		env.close()
		return nil, fmt.Errorf("the event stream: %w", err)
	}
	return env, nil
}

// connect opens a new connection to the server.
func (env *natsEnv) connect() (*nats.Conn, error) { return dial(env.url) }

func dial(url string) (*nats.Conn, error) {
	return nats.Connect(url, nats.Name("presencebench"), nats.MaxReconnects(0))
}

// jetStream opens a new connection to url and a JetStream context on it.
func jetStream(url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := dial(url)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// consumeOrdered reads the event stream from sequence from with an ordered
// consumer pulling as the ingester does, calling fn for each message, until
// the returned context is stopped.
func consumeOrdered(ctx context.Context, js jetstream.JetStream, from uint64, fn func(jetstream.Msg)) (jetstream.ConsumeContext, error) {
	stream, err := js.Stream(ctx, ingest.DefaultStream)
	if err != nil {
		return nil, err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return nil, err
	}
	return cons.Consume(fn, jetstream.PullMaxBytes(ingest.PullMaxBytes))
}

func (env *natsEnv) close() {
	if env.nc != nil {
		env.nc.Close()
	}
	if env.srv != nil {
		env.srv.Shutdown()
		env.srv.WaitForShutdown()
	}
	if env.dir != "" {
		_ = os.RemoveAll(env.dir)
	}
}

// lastSeq is the stream's last sequence.
func (env *natsEnv) lastSeq(ctx context.Context) (uint64, error) {
	info, err := env.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// settle waits until the stream has stored everything sent to it (its last
// sequence still for 200ms) and returns that sequence: the stream stores
// plain publishes asynchronously.
func (env *natsEnv) settle(ctx context.Context) (uint64, error) {
	last, err := env.lastSeq(ctx)
	for err == nil {
		time.Sleep(200 * time.Millisecond)
		var now uint64
		if now, err = env.lastSeq(ctx); err == nil && now == last {
			return now, nil
		}
		last = now
	}
	return 0, err
}

// waitFor polls cond every tick until it holds or timeout passes.
func waitFor(ctx context.Context, what string, timeout, tick time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(tick)
	}
	return nil
}
