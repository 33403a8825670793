package service_test

import (
	"strings"

	"github.com/presenced/presenced/internal/testenv"

	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// binDir holds the programs the tests build, removed when the tests end.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "presenced-test-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	builtMu sync.Mutex
	built   = map[string]string{}
)

// goBuild builds the command pkg as binDir/name, once per test run, with
// flags added to go build. Without -race it is built without the race
// detector even when the test binary has it: a process under test is then
// as fast as in production.
func goBuild(t testing.TB, name, pkg string, flags ...string) string {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	key := pkg + " " + strings.Join(flags, " ")
	if bin, ok := built[key]; ok {
		return bin
	}
	bin := filepath.Join(binDir, name)
	start := time.Now()
	args := append(append([]string{"build"}, flags...), "-o", bin, pkg)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	t.Logf("built %s in %v", name, time.Since(start).Round(time.Millisecond))
	built[key] = bin
	return bin
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
	p := &natsProcess{t: t, port: strconv.Itoa(testenv.FreePort(t)), store: t.TempDir()}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *natsProcess) url() string { return "nats://127.0.0.1:" + p.port }

func (p *natsProcess) start() {
	p.t.Helper()
	p.cmd = exec.Command(goBuild(p.t, "nats-server", "github.com/nats-io/nats-server/v2"), "-js", "-a", "127.0.0.1", "-p", p.port, "-sd", p.store)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	testenv.WaitFor(p.t, "nats-server to accept connections", func() bool {
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
