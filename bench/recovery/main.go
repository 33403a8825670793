package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/service"
)

func main() {
	var o options
	flag.IntVar(&o.users, "users", 1_000_000, "users to track, one login each")
	flag.IntVar(&o.runs, "runs", 3, "restarts per mode (the median is reported)")
	flag.StringVar(&o.tenant, "tenant", "acme", "the tenant of every user")
	flag.StringVar(&o.dir, "dir", "", "data dir to use (kept); empty uses a temporary one, removed at the end")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the restarts from the snapshot to this file")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "recovery:", err)
		os.Exit(1)
	}
}

type options struct {
	users, runs int
	tenant      string
	dir         string
	cpuProfile  string
	timeout     time.Duration
}

func run(o options) error {
	if o.users < 1 || o.runs < 1 || !presence.ValidTenant(o.tenant) {
		return errors.New("-users and -runs must be positive and -tenant a valid tenant id")
	}
	// A hard stop in case something hangs: the program must end by itself.
	time.AfterFunc(o.timeout, func() {
		fmt.Fprintf(os.Stderr, "recovery: still running after -timeout %v, giving up\n", o.timeout)
		os.Exit(2)
	})
	dir := o.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "presenced-recovery-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := service.Defaults()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.NATSListen = "127.0.0.1:-1"
	cfg.DataDir = dir
	cfg.SnapshotInterval = 0 // only at shutdown: the restart loads exactly that one
	cfg.RateLimit = 0
	cfg.LogLevel = "warn"

	fmt.Printf("recovery: %d users of tenant %s, %d restarts per mode, GOMAXPROCS %d, %s\n",
		o.users, o.tenant, o.runs, runtime.GOMAXPROCS(0), runtime.Version())

	// 1. Build the state and the snapshot.
	t0 := time.Now()
	msgs, err := load(cfg, logger, o)
	if err != nil {
		return err
	}
	snapDir := filepath.Join(dir, "snapshots")
	snapFile, snapSize, err := onlySnapshot(snapDir)
	if err != nil {
		return err
	}
	master := filepath.Join(dir, "snapshot.master")
	if err := os.Rename(snapFile, master); err != nil {
		return err
	}
	storeSize, err := dirSize(filepath.Join(dir, "jetstream"))
	if err != nil {
		return err
	}
	fmt.Printf("loaded %d messages in %v; snapshot %s, JetStream store %s\n",
		msgs, time.Since(t0).Round(time.Millisecond), mib(snapSize), mib(storeSize))

	// 2. The breakdown: the snapshot's decoding alone, the NATS server's
	// start alone.
	var decode, natsStart []time.Duration
	for range o.runs {
		d, err := decodeSnapshot(master, o.users)
		if err != nil {
			return err
		}
		decode = append(decode, d)
		if d, err = withServer(cfg, nil); err != nil {
			return err
		}
		natsStart = append(natsStart, d)
	}

	// 3. The restarts.
	var prof *os.File
	if o.cpuProfile != "" {
		if prof, err = os.Create(o.cpuProfile); err != nil {
			return err
		}
		defer prof.Close()
	}
	results := map[string][]restart{}
	for _, mode := range modes {
		for i := range o.runs {
			if err := os.RemoveAll(snapDir); err != nil {
				return err
			}
			switch mode {
			case "snapshot":
				if err := copyFile(master, filepath.Join(snapDir, filepath.Base(snapFile))); err != nil {
					return err
				}
			case "replay":
				// Each graceful stop puts its snapshot in the bucket again.
				if _, err := withServer(cfg, deleteBucket(cfg.Stream+"_SNAPSHOTS")); err != nil {
					return err
				}
			}
			profiling := prof != nil && mode == "snapshot"
			if profiling && i == 0 {
				if err := pprof.StartCPUProfile(prof); err != nil {
					return err
				}
			}
			r, err := restartOnce(cfg, logger, o.users)
			if profiling && i == o.runs-1 {
				pprof.StopCPUProfile()
			}
			if err != nil {
				return fmt.Errorf("%s restart %d: %w", mode, i+1, err)
			}
			fmt.Printf("  %-8s run %d: ready in %v (heap in use %s, stop with snapshot %v)\n",
				mode, i+1, r.ready.Round(time.Millisecond), mib(int64(r.heapInUse)), r.stop.Round(time.Millisecond))
			results[mode] = append(results[mode], r)
		}
	}

	// 4. The report.
	fmt.Printf("\nusers %d, stream messages %d, snapshot %s, JetStream store %s\n", o.users, msgs, mib(snapSize), mib(storeSize))
	fmt.Printf("breakdown: engine.ReadSnapshot alone median %v of %v; embedded NATS server start alone median %v of %v\n",
		median(decode).Round(time.Millisecond), rounded(decode), median(natsStart).Round(time.Millisecond), rounded(natsStart))
	for _, mode := range modes {
		rs := results[mode]
		var ready, stop []time.Duration
		var heap []uint64
		for _, r := range rs {
			ready = append(ready, r.ready)
			stop = append(stop, r.stop)
			heap = append(heap, r.heapInUse)
		}
		slices.Sort(heap)
		fmt.Printf("%-8s  time to ready: median %v of %v; heap in use after ready: median %s; graceful stop: median %v\n",
			mode, median(ready).Round(time.Millisecond), rounded(ready), mib(int64(heap[len(heap)/2])), median(stop).Round(time.Millisecond))
	}
	if m := median(durations(results["snapshot"])); m > 5*time.Second {
		fmt.Printf("target missed: %v > 5s with a snapshot\n", m.Round(time.Millisecond))
	} else {
		fmt.Printf("target met: %v <= 5s with a snapshot\n", m.Round(time.Millisecond))
	}
	if prof != nil {
		fmt.Printf("CPU profile of the snapshot restarts: go tool pprof -top %s\n", o.cpuProfile)
	}
	return nil
}

// modes are the ways of restarting, see the package comment.
var modes = []string{"snapshot", "bucket", "replay"}

// restart is what one restart measured.
type restart struct {
	ready     time.Duration // from service.Start to Ready
	stop      time.Duration // graceful stop, which writes a snapshot
	heapInUse uint64        // runtime HeapInuse once ready, after a GC
}

func durations(rs []restart) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		out = append(out, r.ready)
	}
	return out
}

// restartOnce starts the service on cfg's data dir, times it until Ready,
// checks that it tracks users users, and stops it.
func restartOnce(cfg service.Config, logger *slog.Logger, users int) (restart, error) {
	var r restart
	runtime.GC()
	debug.FreeOSMemory()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	svc, err := service.Start(ctx, cfg, logger)
	if err != nil {
		return r, err
	}
	for !svc.Ready() {
		if time.Since(start) > 5*time.Minute {
			cancel()
			_ = svc.Wait()
			return r, errors.New("not ready after 5 minutes")
		}
		time.Sleep(time.Millisecond)
	}
	r.ready = time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.heapInUse = ms.HeapInuse
	tracked, err := testenv.Metric(svc.HTTPAddr(), "presence_tracked_users")
	if err == nil && tracked != float64(users) {
		err = fmt.Errorf("%v users tracked once ready, want %d", tracked, users)
	}
	stopped := time.Now()
	cancel()
	if werr := svc.Wait(); err == nil {
		err = werr
	}
	r.stop = time.Since(stopped)
	return r, err
}

// load starts the service on an empty data dir, publishes the users, waits
// until every message is applied, and stops it, which writes the snapshot.
// It returns how many messages it published.
func load(cfg service.Config, logger *slog.Logger, o options) (int, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := service.Start(ctx, cfg, logger)
	if err != nil {
		return 0, err
	}
	defer func() { cancel(); _ = svc.Wait() }()
	for !svc.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	nc, err := nats.Connect(svc.NATSURL())
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return 0, err
	}

	r := rand.New(rand.NewPCG(1, 2))
	groups, projects, routing := max(8, o.users/50), max(4, o.users/500), max(6, o.users/200)
	ts := time.Now().Add(-time.Hour).UnixNano()
	var buf []byte
	sent := 0
	publish := func(ev *presence.Event) error {
		subject, err := presence.Subject("presence", o.tenant, ev.Type)
		if err != nil {
			return err
		}
		buf = ev.AppendJSON(buf[:0])
		// PublishAsync keeps the data until acknowledged: give it its own.
		if _, err := js.PublishAsync(subject, slices.Clone(buf)); err != nil {
			return err
		}
		sent++
		return nil
	}
	statuses := []presence.Status{presence.Available, presence.Busy, presence.ToggleOff}
	for i := range o.users {
		ts += 1000
		ev := presence.Event{
			Type: presence.Login, UserID: "u" + strconv.Itoa(i), TS: ts,
			Fields: presence.HasTS | presence.HasRole | presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups |
				presence.HasAvailability | presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots,
			Role:            presence.Role(1 + r.IntN(presence.NumRoles-1)),
			GroupIDs:        distinctIDs(r, "g", groups, 3),
			ProjectIDs:      distinctIDs(r, "p", projects, 1),
			RoutingGroupIDs: distinctIDs(r, "r", routing, 2),
			Availability:    statuses[r.IntN(3)],
			Chat:            statuses[r.IntN(3)],
			MaxSlots:        uint16(1 + r.IntN(5)),
			CurrentSlots:    uint16(r.IntN(4)),
		}
		if err := publish(&ev); err != nil {
			return 0, err
		}
	}
	for i := 0; i < o.users; i += 4 {
		ts += 1000
		ev := presence.Event{
			Type: presence.StatusChange, UserID: "u" + strconv.Itoa(i), TS: ts,
			Fields:       presence.HasTS | presence.HasAvailability | presence.HasChat,
			Availability: statuses[r.IntN(3)], Chat: statuses[r.IntN(3)],
		}
		if err := publish(&ev); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return 0, errors.New("publish acknowledgements still pending after 5 minutes")
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		applied, err := testenv.Metric(svc.HTTPAddr(), "presence_stream_applied_sequence")
		if err != nil {
			return 0, err
		}
		if applied >= float64(sent) {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%v of %d messages applied after 5 minutes", applied, sent)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	return sent, svc.Wait()
}

// distinctIDs returns n distinct ids prefix0..prefix<pool-1>.
func distinctIDs(r *rand.Rand, prefix string, pool, n int) []string {
	out := make([]string, 0, n)
	for len(out) < n {
		id := prefix + strconv.Itoa(r.IntN(pool))
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// decodeSnapshot times reading the snapshot file into an empty engine.
func decodeSnapshot(path string, users int) (time.Duration, error) {
	runtime.GC()
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	e, err := engine.New(engine.Config{})
	if err != nil {
		return 0, err
	}
	if _, err := e.ReadSnapshot(bufio.NewReaderSize(f, 1<<20)); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if got := e.Stats().Users; got != users {
		return 0, fmt.Errorf("the snapshot holds %d users, want %d", got, users)
	}
	return d, nil
}

// withServer starts the embedded NATS server alone on cfg's JetStream store,
// runs fn with a JetStream client if fn is not nil, and stops the server. It
// returns the time the server took to start.
func withServer(cfg service.Config, fn func(context.Context, jetstream.JetStream) error) (time.Duration, error) {
	runtime.GC()
	start := time.Now()
	srv, url, err := ingest.StartServer(ingest.ServerConfig{
		Listen:   cfg.NATSListen,
		StoreDir: filepath.Join(cfg.DataDir, "jetstream"),
	})
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if fn == nil {
		return took, nil
	}
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return took, fn(ctx, js)
}

// deleteBucket returns a withServer function that deletes the object store
// bucket called name, if there is one.
func deleteBucket(name string) func(context.Context, jetstream.JetStream) error {
	return func(ctx context.Context, js jetstream.JetStream) error {
		err := js.DeleteObjectStore(ctx, name)
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil
		}
		return err
	}
}

// onlySnapshot returns the one snapshot file in dir and its size.
func onlySnapshot(dir string) (string, int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", 0, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".snap") {
			names = append(names, e.Name())
		}
	}
	if len(names) != 1 {
		return "", 0, fmt.Errorf("want one snapshot in %s after the load, found %q", dir, names)
	}
	info, err := os.Stat(filepath.Join(dir, names[0]))
	if err != nil {
		return "", 0, err
	}
	return filepath.Join(dir, names[0]), info.Size(), nil
}

func copyFile(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return err
	})
	return total, err
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func rounded(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
