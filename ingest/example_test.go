package ingest_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

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
