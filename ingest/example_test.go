package ingest_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
)

// The wiring of the program: the embedded server, a connection that rides out
// outages, and the ingester feeding the engine until SIGINT.
func Example() {
	logger := slog.Default()
	srv, url, err := ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1:4222", StoreDir: "data/nats", Logger: logger})
	if err != nil {
		logger.Error("nats server", "err", err)
		return
	}
	defer srv.Shutdown()

	nc, err := ingest.Connect(url, logger, prometheus.DefaultRegisterer)
	if err != nil {
		logger.Error("nats connect", "err", err)
		return
	}
	defer nc.Close()

	eng, _ := engine.New(engine.Config{})
	ing, err := ingest.New(ingest.Config{
		Conn:       nc,
		Applier:    eng,
		MaxAge:     ingest.DefaultMaxAge,
		Logger:     logger,
		Registerer: prometheus.DefaultRegisterer,
	})
	if err != nil {
		logger.Error("ingest", "err", err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := ing.Run(ctx); err != nil { // returns nil on SIGINT
		logger.Error("ingest", "err", err)
	}
}

// An instance of a partitioned service: the streams prepared (and their
// partition count checked) first, then one Ingester per partition it holds,
// each into an engine of its own.
func ExamplePrepare() {
	logger := slog.Default()
	nc, err := ingest.Connect("nats://127.0.0.1:4222", logger, prometheus.DefaultRegisterer)
	if err != nil {
		logger.Error("nats connect", "err", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		logger.Error("jetstream", "err", err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	const partitions = 8
	info, err := ingest.Prepare(ctx, js, ingest.Config{Partitions: partitions, Replicas: 3, Logger: logger})
	if errors.Is(err, ingest.ErrPartitions) {
		logger.Error("refusing to start", "err", err) // names the stream's count
		return
	}
	if err != nil {
		logger.Error("prepare", "err", err)
		return
	}
	logger.Info("stream", "created", info.Created, "last_seq", info.LastSeq)

	var wg sync.WaitGroup
	for _, p := range []int{1, 5} { // the partitions this instance holds
		eng, _ := engine.New(engine.Config{})
		ing, err := ingest.New(ingest.Config{Conn: nc, Applier: eng, Partitions: partitions, Partition: p,
			Replicas: 3, Logger: logger, Registerer: prometheus.DefaultRegisterer})
		if err != nil {
			logger.Error("ingest", "err", err)
			return
		}
		wg.Go(func() {
			if err := ing.Run(ctx); err != nil {
				logger.Error("ingest", "partition", p, "err", err)
			}
		})
	}
	wg.Wait()
}
