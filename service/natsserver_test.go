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

// startNATSServer runs an external nats-server process with JetStream on a
// free loopback port, stopped at the end of the test, and returns its URL.
func startNATSServer(t *testing.T) string {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	cmd := exec.Command(natsServerBinary(t), "-js", "-a", "127.0.0.1", "-p", port, "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := "nats://127.0.0.1:" + port
	waitFor(t, "nats-server to accept connections", 20*time.Second, func() bool {
		nc, err := nats.Connect(url)
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
	return url
}
