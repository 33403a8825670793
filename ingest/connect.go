package ingest

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Reconnect backoff: the delay doubles from reconnectMin to reconnectMax, and
// each delay is drawn from its upper half so that many engines cut off by the
// same broker restart do not come back in lockstep.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// ConnectOptions returns the options the engine's NATS connection needs:
// reconnect forever with a jittered exponential backoff (also when the first
// connection fails), keep the subscriptions, log disconnects and reconnects on
// logger (nil: discard), and count reconnects in presence_nats_reconnects_total
// on reg (nil: not counted). Registering on a reg that already has the counter
// reuses it.
func ConnectOptions(logger *slog.Logger, reg prometheus.Registerer) ([]nats.Option, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reconnects := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "presence_nats_reconnects_total",
		Help: "Times the connection to NATS was re-established after a loss.",
	})
	if reg != nil {
		if err := reg.Register(reconnects); err != nil {
			are := prometheus.AlreadyRegisteredError{}
			if !errors.As(err, &are) {
				return nil, err
			}
			reconnects = are.ExistingCollector.(prometheus.Counter)
		}
	}
	// A broker that stays away would make the reconnect error handler log
	// every few seconds; one line per interval says enough.
	reconnectErrLog := &limiter{every: 30 * time.Second}

	return []nats.Option{
		nats.Name("presenced"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil { // our own Close, at shutdown
				logger.Info("nats: disconnected")
				return
			}
			logger.Warn("nats: disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			reconnects.Inc()
			logger.Info("nats: reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			if ok, suppressed := reconnectErrLog.allow(time.Now()); ok {
				logger.Warn("nats: reconnect failed", "err", err, "suppressed", suppressed)
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			logger.Info("nats: connection closed")
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			logger.Warn("nats: asynchronous error", "err", err)
		}),
	}, nil
}

// Connect connects to the NATS server at url with ConnectOptions, followed by
// extra (credentials, TLS, nats.InProcessServer...). Since it retries a failed
// first connection in the background, it returns a connection that may not
// be connected yet: Run waits for it, and Ready reports it.
func Connect(url string, logger *slog.Logger, reg prometheus.Registerer, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := ConnectOptions(logger, reg)
	if err != nil {
		return nil, err
	}
	return nats.Connect(url, append(opts, extra...)...)
}

// reconnectDelay is called by nats.go after each failed pass over the server
// list, attempts counting from 1.
func reconnectDelay(attempts int) time.Duration {
	d := reconnectMax
	if attempts < 16 {
		d = min(reconnectMin<<max(attempts-1, 0), reconnectMax)
	}
	return d/2 + rand.N(d/2+1)
}
