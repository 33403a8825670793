package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/ingest"
)

// The cluster scenario's environment: the presenced program built once and
// run as processes of their own, on one NATS server or a cluster of them
// embedded in the bench's process, all on loopback.

// buildPresenced builds cmd/presenced into dir and returns the program's
// path. It runs the go command in the working directory, which must be in
// the repository (bench/ or its root, as the commands of BENCHMARKS.md).
func buildPresenced(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "presenced")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/presenced/presenced/cmd/presenced")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building cmd/presenced (run from the repository): %w\n%s", err, out)
	}
	return bin, nil
}

// natsNodes are NATS servers in this process: one of its own, or the nodes
// of one cluster (JetStream replicated among them), each with its store in
// a temporary directory and its client port on loopback.
type natsNodes struct {
	dir  string
	srvs []*server.Server
	urls []string
}

// startNATSNodes starts n servers (n > 1: one cluster) and, for a cluster,
// waits until JetStream can place a stream of n replicas.
func startNATSNodes(ctx context.Context, n int) (*natsNodes, error) {
	dir, err := os.MkdirTemp("", "presencebench-nats-")
	if err != nil {
		return nil, err
	}
	nn := &natsNodes{dir: dir, srvs: make([]*server.Server, n), urls: make([]string, n)}
	cfgs := make([]ingest.ServerConfig, n)
	var routes []string
	for i := range cfgs {
		cfgs[i] = ingest.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(dir, strconv.Itoa(i)), ReadyTimeout: time.Minute}
		if n > 1 {
			port, err := freePort()
			if err != nil {
				nn.close()
				return nil, err
			}
			cfgs[i].Cluster = ingest.ClusterConfig{Name: "presencebench", NodeName: fmt.Sprintf("n%d", i+1), Listen: "127.0.0.1:" + strconv.Itoa(port)}
			routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(port))
		}
	}
	// Every node starts before any waits: a node of a cluster accepts
	// clients only once it has met the others.
	errs := make(chan error, n)
	for i := range cfgs {
		cfgs[i].Cluster.Routes = routes
		go func() {
			var err error
			nn.srvs[i], nn.urls[i], err = ingest.StartServer(cfgs[i])
			errs <- err
		}()
	}
	for range n {
		if e := <-errs; e != nil {
			err = e
		}
	}
	if err == nil && n > 1 {
		err = waitFor(ctx, fmt.Sprintf("the NATS cluster to place a stream of %d replicas", n), time.Minute, 100*time.Millisecond,
			func() bool { return nn.probe(ctx, n) == nil })
	}
	if err != nil {
		nn.close()
		return nil, err
	}
	return nn, nil
}

// probe creates and deletes a stream of replicas replicas.
func (nn *natsNodes) probe(ctx context.Context, replicas int) error {
	nc, js, err := jetStream(nn.url())
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PRESENCEBENCH_PROBE", Subjects: []string{"presencebench.probe"},
		Replicas: replicas, Storage: jetstream.MemoryStorage}); err != nil {
		return err
	}
	return js.DeleteStream(ctx, "PRESENCEBENCH_PROBE")
}

// url is every node's client URL, comma-separated, as -nats-url takes them.
func (nn *natsNodes) url() string { return strings.Join(nn.urls, ",") }

func (nn *natsNodes) close() {
	for _, s := range nn.srvs {
		if s != nil {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	_ = os.RemoveAll(nn.dir)
}

// freePort returns a loopback TCP port free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// instance is one presenced program run by the bench: its own data dir, its
// HTTP server on a free loopback port, the flags it was given, its log
// (JSON, stderr) in <dir>/presenced.log.
type instance struct {
	name string
	dir  string
	args []string
	nats string // its -nats-url
	http string // host:port, from its log

	cmd    *exec.Cmd
	exited chan struct{}
}

// startInstance runs bin as instance name with its data dir in dir (kept
// across restarts), -nats-url url and args, and waits until it serves HTTP.
// The environment's PRESENCE_ variables are left out.
func startInstance(ctx context.Context, bin, dir, url, name string, args ...string) (*instance, error) {
	in := &instance{name: name, dir: dir, nats: url, args: append([]string{
		"-instance", name, "-nats-url", url, "-http-addr", "127.0.0.1:0",
		"-data-dir", filepath.Join(dir, "data"), "-log-level", "info",
	}, args...)}
	return in, in.start(ctx, bin)
}

// start runs the program with in's flags again.
func (in *instance) start(ctx context.Context, bin string) error {
	if err := os.MkdirAll(in.dir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(in.dir, "presenced.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	in.cmd = exec.Command(bin, in.args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PRESENCE_") {
			in.cmd.Env = append(in.cmd.Env, kv)
		}
	}
	stderr, err := in.cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return err
	}
	if err := in.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	in.exited = make(chan struct{})
	addr := make(chan string, 1)
	var copied sync.WaitGroup
	copied.Go(func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logf.Write(append(line, '\n'))
			var l struct{ Msg, Addr string }
			if json.Unmarshal(line, &l) == nil && l.Msg == "serving HTTP" {
				select {
				case addr <- l.Addr:
				default:
				}
			}
		}
		_, _ = io.Copy(logf, stderr)
	})
	go func() {
		copied.Wait()
		_ = in.cmd.Wait()
		logf.Close()
		close(in.exited)
	}()
	select {
	case in.http = <-addr:
		return nil
	case <-in.exited:
		return fmt.Errorf("presenced %s exited before serving (log in %s): %s", in.name, in.dir, in.lastLog())
	case <-time.After(time.Minute):
	case <-ctx.Done():
	}
	in.kill()
	return fmt.Errorf("presenced %s: not serving HTTP (log in %s)", in.name, in.dir)
}

// lastLog is the end of the instance's log, for errors.
func (in *instance) lastLog() string {
	b, _ := os.ReadFile(filepath.Join(in.dir, "presenced.log"))
	return string(b[max(0, len(b)-2000):])
}

// running reports whether the process has not exited.
func (in *instance) running() bool {
	select {
	case <-in.exited:
		return false
	default:
		return true
	}
}

// kill ends the process with SIGKILL and waits for it.
func (in *instance) kill() {
	if in.running() {
		_ = in.cmd.Process.Kill()
	}
	<-in.exited
}

// terminate sends SIGTERM (presenced hands its partitions over and writes
// a last snapshot of each) and waits for the exit, killing the process
// after timeout.
func (in *instance) terminate(timeout time.Duration) error {
	if !in.running() {
		return nil
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
		if !in.cmd.ProcessState.Success() {
			return fmt.Errorf("presenced %s: %v after SIGTERM: %s", in.name, in.cmd.ProcessState, in.lastLog())
		}
		return nil
	case <-time.After(timeout):
		in.kill()
		return fmt.Errorf("presenced %s: still running %v after SIGTERM, killed", in.name, timeout)
	}
}

// ready reports whether /readyz answers 200.
func (in *instance) ready() bool {
	resp, err := metricsClient.Get("http://" + in.http + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// gauge reads the sum of a /metrics family's series whose labels include
// labels' pairs, -1 when the instance does not answer or has no such series.
func (in *instance) gauge(name string, labels ...string) float64 {
	v, n, err := series(in.http, name, labels...)
	if err != nil || n == 0 {
		return -1
	}
	return v
}

// waitMembersGone waits until the members bucket of the stream holds no
// instance: the keys of killed instances expire within seconds, and the
// next instances must not count them.
func waitMembersGone(ctx context.Context, js jetstream.JetStream, stream string) error {
	kv, err := js.KeyValue(ctx, stream+"_MEMBERS")
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return waitFor(ctx, "the members of killed instances to expire", time.Minute, 100*time.Millisecond, func() bool {
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return false
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		return n == 0
	})
}
