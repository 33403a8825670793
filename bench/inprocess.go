package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/presenced/presenced/service"
)

// What the scenarios that run presenced in this process (soak, recovery)
// share: its configuration and start, their bound in time, the heap.

// serviceConfig is presenced's configuration for the bench: loopback ports
// (random), its data in dir, no rate limit, every other setting the
// default.
func serviceConfig(dir string) service.Config {
	cfg := service.Defaults()
	cfg.HTTPAddr, cfg.NATSListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:-1", dir
	cfg.RateLimit = 0
	return cfg
}

// warnLogger is the logger of presenced in this process: its warnings and
// errors, on stderr.
var warnLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// runService starts presenced in this process and waits until it is ready
// (snapshot loaded, stream read to its end). It returns how long that took,
// and stop, which shuts it down as on SIGTERM (a graceful stop writes a
// snapshot) and returns what went wrong; stop may be called again.
func runService(ctx context.Context, cfg service.Config) (svc *service.Service, ready time.Duration, stop func() error, err error) {
	ctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	svc, err = service.Start(ctx, cfg, warnLogger)
	if err != nil {
		cancel()
		return nil, 0, nil, err
	}
	stop = func() error {
		cancel()
		return svc.Wait()
	}
	if err := waitFor(ctx, "presenced to be ready", 5*time.Minute, time.Millisecond, svc.Ready); err != nil {
		_ = stop()
		return nil, 0, nil, err
	}
	return svc, time.Since(start), stop, nil
}

// bound returns ctx ending after d. If the scenario is still running a
// minute after that, something ignored ctx: the program says so and exits,
// for it must end by itself. The returned func disarms that.
func bound(ctx context.Context, name string, d time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithTimeout(ctx, d)
	t := time.AfterFunc(d+time.Minute, func() {
		fmt.Fprintf(os.Stderr, "presencebench: %s still running after %v, giving up\n", name, d+time.Minute)
		os.Exit(2)
	})
	return ctx, func() {
		t.Stop()
		cancel()
	}
}

// heapInUse returns the heap in use after two forced GCs: the second frees
// what sync.Pool caches released in the first. Presenced in this process,
// and its embedded NATS server, are in it.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// startCPUProfile starts writing a CPU profile to path and returns what
// stops it.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// mib is n bytes in MiB, for the tables.
func mib[N int64 | uint64](n N) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
