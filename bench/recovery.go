package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/service"
)

// RecoveryOptions are the recovery scenario's settings; each field's
// comment says what its zero value means.
type RecoveryOptions struct {
	// Users is how many users are tracked, each with a login and its whole
	// profile; zero means 1,000,000.
	Users int `json:"users"`
	// Runs is the restarts per mode, the median reported; zero means
	// Options.Repeat.
	Runs int `json:"runs"`
	// Tenant is every user's tenant; empty means Tenant.
	Tenant string `json:"tenant"`
	// Dir is the data dir, kept at the end; empty means a temporary one,
	// removed.
	Dir string `json:"-"`
	// CPUProfile, if not empty, is written with a CPU profile of the
	// restarts from the snapshot, and of nothing else.
	CPUProfile string `json:"-"`
}

// settings fills the zero fields and checks the others; o.Short makes a
// smoke-sized run.
func (r RecoveryOptions) settings(o *Options) (RecoveryOptions, error) {
	if o.Short {
		r.Users = 2_000
	}
	if r.Users == 0 {
		r.Users = 1_000_000
	}
	if r.Runs == 0 {
		r.Runs = o.Repeat
	}
	if r.Tenant == "" {
		r.Tenant = Tenant
	}
	switch {
	case r.Users < 0 || r.Runs < 0:
		return r, errors.New("recovery: -users and -runs must not be negative")
	case !presence.ValidTenant(r.Tenant):
		return r, fmt.Errorf("recovery: -tenant %q: not a valid tenant id", r.Tenant)
	}
	return r, nil
}

// The ways of restarting, see Recovery.
var recoveryModes = []string{"snapshot", "bucket", "replay"}

// RecoveryData is the recovery scenario's numbers.
type RecoveryData struct {
	Settings RecoveryOptions `json:"settings"`
	// Messages is the stream's length; Load the time to publish and apply
	// it.
	Messages      uint64        `json:"messages"`
	Load          time.Duration `json:"load_ns"`
	SnapshotBytes int64         `json:"snapshot_bytes"`
	StoreBytes    int64         `json:"jetstream_store_bytes"`
	// ReadSnapshot is engine.ReadSnapshot of the snapshot file alone, and
	// NATSStart the embedded NATS server's start on the store alone, per
	// run.
	ReadSnapshot []time.Duration `json:"read_snapshot_ns"`
	NATSStart    []time.Duration `json:"nats_start_ns"`
	Restarts     []Restart       `json:"restarts"`
}

// Restart is what one restart measured.
type Restart struct {
	Mode string `json:"mode"`
	// Ready runs from service.Start to Ready; Stop is the graceful stop
	// after it, which writes a snapshot.
	Ready time.Duration `json:"ready_ns"`
	Stop  time.Duration `json:"stop_ns"`
	// HeapInUse is measured once ready, after forced GCs.
	HeapInUse uint64 `json:"heap_in_use"`
}

// Recovery measures how long presenced, in this process, takes to be ready
// after a restart with many tracked users: from the snapshot written at
// shutdown, from its copy in the object store, and with neither (a full
// replay of the stream).
//
// It starts presenced (service.Start, embedded NATS, loopback ports, the
// data dir), publishes one login per user with the whole profile and then
// a quarter as many events of the day's traffic (the Population's, with
// JetStream acknowledgements), waits until all is applied and stops it
// gracefully, which writes the snapshot. Then it restarts it Runs times in
// each mode and times service.Start until Ready (snapshot loaded, NATS and
// its JetStream store recovered, the stream read to its end), checking
// that every user is tracked:
//
//	snapshot  the snapshot in <data-dir>/snapshots, as after any restart
//	bucket    <data-dir>/snapshots removed: the copy in the JetStream object
//	          store is loaded, as by a new instance with an empty data dir
//	replay    both removed: the whole stream is read
//
// It reports the medians, the heap in use once ready (the embedded NATS
// server lives in the same heap), the sizes on disk, and for the breakdown
// the time of engine.ReadSnapshot alone and of the embedded NATS server's
// start (JetStream store recovery) alone.
func Recovery(ctx context.Context, o Options) (*Result, error) {
	res := newResult("recovery", &o)
	r, err := o.Recovery.settings(&o)
	if err != nil {
		return nil, err
	}
	ctx, disarm := bound(ctx, "recovery", o.timeout(10*time.Minute))
	defer disarm()
	data := &RecoveryData{Settings: r}
	res.Data = data
	dir := r.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "presencebench-recovery-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	cfg := serviceConfig(dir)
	cfg.SnapshotInterval = 0 // only at shutdown: the restart loads exactly that one
	o.logf("recovery: %d users of tenant %s, %d restarts per mode", r.Users, r.Tenant, r.Runs)

	// 1. The state and its snapshot.
	t0 := time.Now()
	if data.Messages, err = recoveryLoad(ctx, cfg, r); err != nil {
		return nil, err
	}
	data.Load = time.Since(t0)
	snapDir := filepath.Join(dir, "snapshots")
	snapFile, err := onlySnapshot(snapDir)
	if err != nil {
		return nil, err
	}
	master := filepath.Join(dir, "snapshot.master")
	if err := os.Rename(snapFile, master); err != nil {
		return nil, err
	}
	if data.SnapshotBytes, err = dirSize(master); err != nil {
		return nil, err
	}
	if data.StoreBytes, err = dirSize(filepath.Join(dir, "jetstream")); err != nil {
		return nil, err
	}
	o.logf("recovery: %d messages loaded in %v; snapshot %s, JetStream store %s",
		data.Messages, data.Load.Round(time.Millisecond), mib(data.SnapshotBytes), mib(data.StoreBytes))

	// 2. The breakdown: the snapshot's decoding alone, the NATS server's
	// start alone.
	for range r.Runs {
		d, err := readSnapshot(master, r.Users)
		if err != nil {
			return nil, err
		}
		data.ReadSnapshot = append(data.ReadSnapshot, d)
		if d, err = withServer(ctx, cfg, nil); err != nil {
			return nil, err
		}
		data.NATSStart = append(data.NATSStart, d)
	}

	// 3. The restarts.
	for _, mode := range recoveryModes {
		for i := range r.Runs {
			if err := os.RemoveAll(snapDir); err != nil {
				return nil, err
			}
			switch mode {
			case "snapshot":
				if err := copyFile(master, snapFile); err != nil {
					return nil, err
				}
			case "replay":
				// Each graceful stop puts its snapshot in the bucket again.
				if _, err := withServer(ctx, cfg, deleteBucket(cfg.Stream+"_SNAPSHOTS")); err != nil {
					return nil, err
				}
			}
			profiling := r.CPUProfile != "" && mode == "snapshot"
			var stopProfile func()
			if profiling && i == 0 {
				if stopProfile, err = startCPUProfile(r.CPUProfile); err != nil {
					return nil, err
				}
			}
			rs, err := restartOnce(ctx, cfg, r.Users)
			if profiling && i == r.Runs-1 {
				stopProfile()
			}
			if err != nil {
				return nil, fmt.Errorf("recovery: %s restart %d: %w", mode, i+1, err)
			}
			rs.Mode = mode
			o.logf("recovery: %-8s run %d: ready in %v (heap in use %s, stop with snapshot %v)",
				mode, i+1, rs.Ready.Round(time.Millisecond), mib(rs.HeapInUse), rs.Stop.Round(time.Millisecond))
			data.Restarts = append(data.Restarts, rs)
		}
	}
	data.report(res)
	return res.finish(&o)
}

// report writes the recovery's tables and target.
func (d *RecoveryData) report(res *Result) {
	s := d.Settings
	t := res.table(fmt.Sprintf("Recovery: time to ready after a restart with %d users (median of %d restarts per mode)", s.Users, s.Runs),
		"mode", "time to ready", "runs", "heap in use once ready", "graceful stop")
	var snapshotReady time.Duration
	for _, mode := range recoveryModes {
		var ready, stop []time.Duration
		var heap []float64
		for _, r := range d.Restarts {
			if r.Mode == mode {
				ready, stop, heap = append(ready, r.Ready), append(stop, r.Stop), append(heap, float64(r.HeapInUse))
			}
		}
		m := MedianDuration(ready)
		if mode == "snapshot" {
			snapshotReady = m
		}
		t.Add(mode, m.Round(time.Millisecond), rounded(ready), mib(uint64(Median(heap))), MedianDuration(stop).Round(time.Millisecond))
	}
	st := res.table("Recovery: sizes and breakdown", "what", "value")
	st.Add("stream messages, loaded (published and applied) in", fmt.Sprintf("%d, %v", d.Messages, d.Load.Round(time.Millisecond)))
	st.Add("snapshot file", fmt.Sprintf("%s (%.0f B per user)", mib(d.SnapshotBytes), float64(d.SnapshotBytes)/float64(s.Users)))
	st.Add("JetStream store", mib(d.StoreBytes))
	st.Add("engine.ReadSnapshot alone", fmt.Sprintf("median %v of %v", MedianDuration(d.ReadSnapshot).Round(time.Millisecond), rounded(d.ReadSnapshot)))
	st.Add("embedded NATS server start alone", fmt.Sprintf("median %v of %v", MedianDuration(d.NATSStart).Round(time.Millisecond), rounded(d.NATSStart)))
	res.target("time to ready with a snapshot", "< 5 s", snapshotReady.Round(time.Millisecond).String(), snapshotReady < 5*time.Second)
	res.note("medians are bench.Median's (the mean of the middle two for an even count); the heap is Go's HeapInuse after two forced GCs once ready, the embedded NATS server included")
}

func rounded(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// recoveryLoad starts presenced on an empty data dir, publishes the users'
// logins and a quarter as many events of their traffic, waits until every
// message is applied, and stops it, which writes the snapshot. It returns
// the stream's length.
func recoveryLoad(ctx context.Context, cfg service.Config, r RecoveryOptions) (uint64, error) {
	svc, _, stop, err := runService(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer stop()
	env, err := dialNATS(ctx, svc.NATSURL(), cfg.Stream, cfg.SubjectPrefix)
	if err != nil {
		return 0, err
	}
	defer env.close()
	pop := NewPopulation(r.Users, 30)
	pop.Offline = 0
	traffic := pop.Traffic(0)
	total := r.Users + r.Users/4
	ts := time.Now().Add(-time.Hour).UnixNano()
	chunk := make([]presence.Event, 0, 1<<16) // not all at once: the heap measured later is this process's
	for sent := 0; sent < total; sent += len(chunk) {
		chunk = chunk[:min(cap(chunk), total-sent)]
		for i := range chunk {
			chunk[i] = traffic.Next()
			stamp(&chunk[i], ts+int64(sent+i)*1000)
		}
		if err := publishAcked(ctx, env.js, env.prefix, r.Tenant, chunk); err != nil {
			return 0, err
		}
	}
	last, err := env.lastSeq(ctx)
	if err != nil {
		return 0, err
	}
	if last != uint64(total) {
		return 0, fmt.Errorf("recovery: the stream holds %d messages, want %d", last, total)
	}
	if err := waitApplied(ctx, svc.HTTPAddr(), last, 5*time.Minute); err != nil {
		return 0, err
	}
	return last, stop()
}

// restartOnce starts presenced on cfg's data dir, times it until Ready,
// checks that it tracks users users, and stops it.
func restartOnce(ctx context.Context, cfg service.Config, users int) (Restart, error) {
	var r Restart
	runtime.GC()
	debug.FreeOSMemory()
	svc, ready, stop, err := runService(ctx, cfg)
	if err != nil {
		return r, err
	}
	r.Ready, r.HeapInUse = ready, heapInUse()
	tracked, err := metric(svc.HTTPAddr(), "presence_tracked_users")
	if err == nil && tracked != float64(users) {
		err = fmt.Errorf("%v users tracked once ready, want %d", tracked, users)
	}
	stopped := time.Now()
	if serr := stop(); err == nil {
		err = serr
	}
	r.Stop = time.Since(stopped)
	return r, err
}

// readSnapshot times reading the snapshot file into an empty engine.
func readSnapshot(path string, users int) (time.Duration, error) {
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
func withServer(ctx context.Context, cfg service.Config, fn func(context.Context, jetstream.JetStream) error) (time.Duration, error) {
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
	nc, js, err := jetStream(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
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

// onlySnapshot returns the path of the one snapshot file in dir.
func onlySnapshot(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".snap") {
			names = append(names, e.Name())
		}
	}
	if len(names) != 1 {
		return "", fmt.Errorf("recovery: want one snapshot in %s after the load, found %q", dir, names)
	}
	return filepath.Join(dir, names[0]), nil
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

// dirSize is the size of the files under path (a file or a directory).
func dirSize(path string) (int64, error) {
	var total int64
	err := filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
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
