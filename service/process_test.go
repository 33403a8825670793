package service_test

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// buildPresenced returns the presenced program, built once per test run.
func buildPresenced(t *testing.T) string {
	return goBuild(t, "presenced", "github.com/presenced/presenced/cmd/presenced")
}

// presencedProcess is a presenced program run by a test, on free loopback
// ports, killed at the end of the test if still running.
type presencedProcess struct {
	t        *testing.T
	cmd      *exec.Cmd
	httpAddr string
	natsURL  string
	log      *testenv.Buffer // its stderr: JSON log lines
	exited   chan struct{}   // closed once the process has exited
	waitErr  error           // how it exited, once exited is closed
}

// startPresenced runs bin on dataDir with the embedded NATS server and the
// HTTP server on free loopback ports, plus args. The environment's
// PRESENCE_ variables are left out so that they cannot change the flags.
func startPresenced(t *testing.T, bin, dataDir string, args ...string) *presencedProcess {
	t.Helper()
	p := &presencedProcess{
		t:        t,
		httpAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
		log:      &testenv.Buffer{},
		exited:   make(chan struct{}),
	}
	natsPort := strconv.Itoa(freePort(t))
	p.natsURL = "nats://127.0.0.1:" + natsPort
	p.cmd = exec.Command(bin, append([]string{
		"-http-addr", p.httpAddr,
		"-nats-listen", "127.0.0.1:" + natsPort,
		"-data-dir", dataDir,
	}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PRESENCE_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if !p.hasExited() {
			p.kill()
		}
		if t.Failed() {
			t.Logf("presenced log (%s):\n%s", p.httpAddr, p.log)
		}
	})
	return p
}

func (p *presencedProcess) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// kill ends the process with SIGKILL, as a crash or the OOM killer would:
// no shutdown snapshot, no flushing.
func (p *presencedProcess) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatal(err)
	}
	<-p.exited
}

// stop sends SIGTERM and checks that the process exits 0 in time.
func (p *presencedProcess) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill()
		p.t.Fatal("presenced did not exit within 30s of SIGTERM")
	}
	if p.waitErr != nil {
		p.t.Fatalf("presenced exited with %v", p.waitErr)
	}
}

// waitReady polls /readyz until it answers 200, failing at once if the
// process exits meanwhile.
func (p *presencedProcess) waitReady() {
	p.t.Helper()
	client := &http.Client{Timeout: time.Second}
	testenv.WaitFor(p.t, "presenced's /readyz to answer 200", func() bool {
		if p.hasExited() {
			p.t.Fatalf("presenced exited (%v) before it was ready", p.waitErr)
		}
		resp, err := client.Get("http://" + p.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
