package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
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

// MaybeServe returns at once unless ServeEnv is set; then it serves (see
// ServeEnv) and exits the process. Programs that run the query scenario
// (the command, the tests' TestMain) call it first thing.
func MaybeServe() {
	v, ok := os.LookupEnv(ServeEnv)
	if !ok {
		return
	}
	if err := serve(v); err != nil {
		fmt.Fprintln(os.Stderr, "presencebench server:", err)
		os.Exit(1)
	}
	os.Exit(0)
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

// serverProcess is the api served by a child process (see ServeEnv).
type serverProcess struct {
	addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startServerProcess re-executes this program as the server of a population
// of users users and waits for its address.
// A non-empty profile is the file of its CPU profile.
func startServerProcess(ctx context.Context, users int, profile string) (*serverProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), ServeEnv+"="+strconv.Itoa(users))
	if profile != "" {
		cmd.Env = append(cmd.Env, ServeProfileEnv+"="+profile)
	}
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
		p.addr = addr
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
// if it has not exited within 10 s.
func (p *serverProcess) close() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
