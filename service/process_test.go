package service_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
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
	return startPresencedEnv(t, bin, dataDir, nil, args...)
}

// startPresencedEnv is startPresenced with env (KEY=value entries) added to
// the process's environment.
func startPresencedEnv(t *testing.T, bin, dataDir string, env []string, args ...string) *presencedProcess {
	t.Helper()
	p := &presencedProcess{
		t:        t,
		httpAddr: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		log:      &testenv.Buffer{},
		exited:   make(chan struct{}),
	}
	natsPort := strconv.Itoa(testenv.FreePort(t))
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
	p.cmd.Env = append(p.cmd.Env, env...)
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

// TestRateLimitFlag runs the program as a user would: with its defaults a
// client asking queries back to back is never throttled; -rate-limit, or its
// PRESENCE_RATE_LIMIT twin, turns the limit on: 429 with Retry-After and a
// RATE_LIMITED GraphQL error.
func TestRateLimitFlag(t *testing.T) {
	bin := buildPresenced(t)
	query := `{"query":"{ connectedUsersIndicator(filters: {groupIds: [\"g1\", \"g2\"]}) { connectedUsersCount } }"}`
	ask := func(p *presencedProcess) (int, http.Header, string) {
		t.Helper()
		resp, err := http.Post("http://"+p.httpAddr+"/graphql", "application/json", strings.NewReader(query))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, string(body)
	}

	t.Run("default", func(t *testing.T) {
		p := startPresenced(t, bin, t.TempDir())
		p.waitReady()
		for i := range 300 {
			if code, _, body := ask(p); code != http.StatusOK {
				t.Fatalf("query %d of 300 back to back: %d %s, want 200: the default is no limit", i+1, code, body)
			}
		}
		p.stop()
	})
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flag", nil, []string{"-rate-limit", "5"}},
		{"env", []string{"PRESENCE_RATE_LIMIT=5"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPresencedEnv(t, bin, t.TempDir(), tc.env, tc.args...)
			p.waitReady()
			// A burst of 5 is allowed at once; asked faster than 5/s, the
			// client is refused within a few more.
			for i := range 50 {
				code, h, body := ask(p)
				if code == http.StatusOK {
					continue
				}
				if code != http.StatusTooManyRequests {
					t.Fatalf("query %d: %d %s, want 200 or 429", i+1, code, body)
				}
				if i < 5 {
					t.Errorf("refused at query %d, within the burst of 5", i+1)
				}
				if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra != 1 {
					t.Errorf("Retry-After %q, want 1 (s) at 5 requests/s", h.Get("Retry-After"))
				}
				if !strings.Contains(body, `"code":"RATE_LIMITED"`) {
					t.Errorf("429 body %s, want a RATE_LIMITED GraphQL error", body)
				}
				p.stop()
				return
			}
			t.Fatal("50 queries back to back at a limit of 5/s were all answered")
		})
	}
}

// TestProgramRaced runs the program built with the race detector through
// what every part of it does at once: the simulator publishing, ingest,
// queries and breakdowns over HTTP, a subscription over WebSocket, the
// metrics, snapshots, and a SIGTERM. The race detector makes the process
// print "DATA RACE" and exit 66 when it sees one.
func TestProgramRaced(t *testing.T) {
	bin := goBuild(t, "presenced-race", "github.com/presenced/presenced/cmd/presenced", "-race")
	p := startPresenced(t, bin, t.TempDir(), "-simulate", "100", "-snapshot-interval", "1s", "-session-ttl", "1m")
	p.waitReady()
	testenv.WaitFor(t, "the simulated agents", func() bool {
		return indicator(t, p.httpAddr, "", nil, &engine.Filter{}).ConnectedUsersCount > 0
	})

	c := liveDial(t, p.httpAddr, nil)
	if err := c.Subscribe(t.Context(), "s", liveSubscription, map[string]any{"f": nil, "ms": 0}); err != nil {
		t.Fatal(err)
	}
	values := 0
	for deadline := time.Now().Add(testenv.WaitTimeout); values < 5; {
		m, err := c.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("after %d values: %v", values, err)
		}
		pushed(t, m)
		values++
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 60 {
		f := oracle.RandomFilter(r, oracle.Class(i%3), 100)
		indicator(t, p.httpAddr, "", nil, f)
		vars := variables(f)
		vars["by"] = testenv.DimensionNames[i%len(testenv.DimensionNames)]
		if code, body := graphql(t, p.httpAddr, "", nil, testenv.BreakdownQuery, vars); code != http.StatusOK {
			t.Fatalf("breakdown: %d %s", code, body)
		}
	}
	if metric(t, p.httpAddr, "presence_stream_applied_sequence") <= 0 {
		t.Fatal("/metrics shows nothing applied")
	}
	c.CloseNow()
	p.stop()
	if strings.Contains(p.log.String(), "DATA RACE") {
		t.Fatalf("the race detector reported a race:\n%s", p.log)
	}
}
