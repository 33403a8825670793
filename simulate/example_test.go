package simulate_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/publish"
	"github.com/presenced/presenced/simulate"
)

// 200 agents of tenant default, published to the NATS server presenced uses,
// until SIGINT.
func Example() {
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		slog.Error("nats", "err", err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	pub, _ := publish.New(js, "")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := simulate.Run(ctx, simulate.Config{Agents: 200, Publisher: pub, Logger: slog.Default()}); err != nil {
		slog.Error("simulate", "err", err)
	}
}
