package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presenced/presenced/service"
)

// ServeEnv is the environment variable that turns the program into the query
// scenario's server: set to a number of users, MaybeServe loads that
// population (the query scenario's seed) into an engine, serves the api on
// a loopback port, prints "addr HOST:PORT" on its standard output and serves
// until its standard input is closed. The query scenario re-executes its own
// program with it, so that the load generator and the server, whose heap
// holds the engine, do not share one process and one garbage collector.
const ServeEnv = "PRESENCEBENCH_SERVE"

// ServeProfileEnv, set with ServeEnv, names the file of the server
// process's CPU profile (from the address printed to its exit).
const ServeProfileEnv = "PRESENCEBENCH_SERVE_CPUPROFILE"

// querySeed is the seed of the query scenario's populations, in the parent
// and in the server process.
const querySeed = 7

// ServiceEnv is the environment variable that turns the program into the
// peers scenario's presenced: set to a directory, MaybeServe runs the whole
// service (service.Start: embedded NATS on a random loopback port, its store
// and snapshots in that directory, GraphQL on a random loopback port, open
// mode, no rate limit, every other setting the program's default), prints
// "addr HTTP-HOST:PORT NATS-URL" on its standard output and runs until its
// standard input is closed, then shuts down as on SIGTERM.
const ServiceEnv = "PRESENCEBENCH_SERVICE"

// ServiceSnapshotEnv, set with ServiceEnv, is that presenced's
// -snapshot-interval (a time.ParseDuration string; 0: only at shutdown);
// unset, the program's default.
const ServiceSnapshotEnv = "PRESENCEBENCH_SERVICE_SNAPSHOT_INTERVAL"

// FloorEnv is the environment variable that turns the program into the
// peers scenario's HTTP floor: a bare net/http server that answers every
// POST /graphql with the same small indicator, no GraphQL and no engine,
// on a random loopback port; it prints "addr HOST:PORT" and serves until
// its standard input is closed. It is what any Go HTTP API costs here.
// Set to a NATS URL instead of 1, it answers each request with what a
// request-reply on natsEchoSubject (see NATSEchoEnv) brings back: the
// floor of a query forwarded over NATS.
const FloorEnv = "PRESENCEBENCH_HTTP_FLOOR"

// NATSEchoEnv is the environment variable that turns the program into the
// cluster scenario's NATS floor: set to a NATS URL, it answers every
// request on natsEchoSubject (queue group natsEchoSubject) with the HTTP
// floor's body, prints "addr URL" and serves until its standard input is
// closed. A bare request-reply through NATS between two processes is what
// any forwarding over NATS costs at least here.
const NATSEchoEnv = "PRESENCEBENCH_NATS_ECHO"

// natsEchoSubject is where NATSEchoEnv's process answers.
const natsEchoSubject = "presencebench.echo"

// MaybeServe returns at once unless ServeEnv, ServiceEnv, FloorEnv or
// NATSEchoEnv is set; then it serves (see each) and exits the process.
// Programs that run the scenarios (the command, the tests' TestMain) call
// it first thing.
func MaybeServe() {
	var run func(string) error
	var v string
	for env, fn := range map[string]func(string) error{ServeEnv: serve, ServiceEnv: serveService, FloorEnv: serveFloor, NATSEchoEnv: serveNATSEcho} {
		if val, ok := os.LookupEnv(env); ok {
			run, v = fn, val
		}
	}
	if run == nil {
		return
	}
	if err := run(v); err != nil {
		fmt.Fprintln(os.Stderr, "presencebench server:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveService(dir string) error {
	cfg := serviceConfig(dir)
	if v, ok := os.LookupEnv(ServiceSnapshotEnv); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%s=%q: want a duration, 0 or more", ServiceSnapshotEnv, v)
		}
		cfg.SnapshotInterval = d
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := service.Start(ctx, cfg, warnLogger)
	if err != nil {
		return err
	}
	fmt.Printf("addr %s %s\n", svc.HTTPAddr(), svc.NATSURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	return svc.Wait()
}

func serve(users string) error {
	n, err := strconv.Atoi(users)
	if err != nil || n <= 0 {
		return fmt.Errorf("%s=%q: want a number of users", ServeEnv, users)
	}
	e, _, err := loadEngine(NewPopulation(n, querySeed))
	if err != nil {
		return err
	}
	runtime.GC()
	srv, err := startAPI(e)
	if err != nil {
		return err
	}
	if path := os.Getenv(ServeProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("addr %s\n", srv.addr)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it, or dies
	srv.close()
	runtime.KeepAlive(e)
	return nil
}

// floorAnswer is what the HTTP floor answers: an indicator of zeros, as
// presenced would give it.
const floorAnswer = `{"data":{"connectedUsersIndicator":{"connectedUsersCount":0,` +
	`"countByChatAvailabilityStatus":{"available":0,"busy":0,"toggleOff":0},` +
	`"usersInProductionChatOccupancy":{"maximumSimultaneousConversationAverage":0,"simultaneousConversationAverage":0,"occupancyRate":0}}}}`

func serveFloor(natsURL string) error {
	answer := func([]byte) ([]byte, error) { return []byte(floorAnswer), nil }
	if natsURL != "1" {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			return err
		}
		defer nc.Close()
		answer = func(body []byte) ([]byte, error) {
			m, err := nc.Request(natsEchoSubject, body, 10*time.Second)
			if err != nil {
				return nil, err
			}
			return m.Data, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a, err := answer(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(a)
	})}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("addr %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

// serveNATSEcho answers requests on natsEchoSubject (see NATSEchoEnv).
func serveNATSEcho(url string) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := nc.QueueSubscribe(natsEchoSubject, natsEchoSubject, func(m *nats.Msg) {
		_ = m.Respond([]byte(floorAnswer))
	}); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	fmt.Printf("addr %s\n", url)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// serverProcess is this program re-executed as a server (see ServeEnv and
// ServiceEnv).
type serverProcess struct {
	addr  []string // what it printed after "addr "
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startServerProcess re-executes this program with env added to its
// environment and waits for the addresses it prints.
func startServerProcess(ctx context.Context, env ...string) (*serverProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &serverProcess{cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		addr, found := strings.CutPrefix(l, "addr ")
		if !ok || !found {
			p.close()
			return nil, fmt.Errorf("server process: no address (got %q)", l)
		}
		p.addr = strings.Fields(addr)
		return p, nil
	case <-time.After(10 * time.Minute):
		p.close()
		return nil, fmt.Errorf("server process: no address after 10 minutes")
	case <-ctx.Done():
		p.close()
		return nil, ctx.Err()
	}
}

// close stops the server process: its standard input closed, then killed
// if it has not exited within 10 s. It returns how the process ended (nil:
// it exited 0).
func (p *serverProcess) close() error {
	_ = p.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("server process: killed after 10 s (%v)", <-done)
	}
}
