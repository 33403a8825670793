package service_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

var (
	buildOnce    sync.Once
	natsBinary   string
	natsBuildErr error
)

// natsServerBinary builds the nats-server command from the module this
// project already depends on, once per test run.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "presenced-nats-server")
		if err != nil {
			natsBuildErr = err
			return
		}
		natsBinary = filepath.Join(dir, "nats-server")
		out, err := exec.Command("go", "build", "-o", natsBinary, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsBuildErr = err
			natsBinary = string(out)
		}
	})
	if natsBuildErr != nil {
		t.Fatalf("building nats-server: %v\n%s", natsBuildErr, natsBinary)
	}
	return natsBinary
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// natsProcess is an external nats-server process with JetStream on a fixed
// loopback port and store dir, so that it can be restarted in place.
type natsProcess struct {
	t     *testing.T
	port  string
	store string
	cmd   *exec.Cmd
}

// startNATSServer runs an external nats-server process on a free loopback
// port, stopped at the end of the test, and returns its URL.
func startNATSServer(t *testing.T) string {
	return startNATSProcess(t).url()
}

func startNATSProcess(t *testing.T) *natsProcess {
	t.Helper()
	p := &natsProcess{t: t, port: strconv.Itoa(freePort(t)), store: t.TempDir()}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *natsProcess) url() string { return "nats://127.0.0.1:" + p.port }

func (p *natsProcess) start() {
	p.t.Helper()
	p.cmd = exec.Command(natsServerBinary(p.t), "-js", "-a", "127.0.0.1", "-p", p.port, "-sd", p.store)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	waitFor(p.t, "nats-server to accept connections", 20*time.Second, func() bool {
		nc, err := nats.Connect(p.url())
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
}

// stop kills the server at once, as a crash would.
func (p *natsProcess) stop() {
	if p.cmd != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}
