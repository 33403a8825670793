package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotInstalled says a peer's server program is not on this machine.
var ErrNotInstalled = errors.New("not installed")

// Server is a database server process started by the bench, on a free
// loopback port, with its files in a temporary directory that Stop removes.
type Server struct {
	Addr string // host:port, loopback
	Dir  string // the temporary directory
	// Socket is, for PostgreSQL, the directory of its unix socket.
	Socket  string
	cmd     *exec.Cmd
	exited  chan error
	stopSig os.Signal
}

// Stop ends the server (its fast, clean shutdown), waits for it and removes
// its directory.
func (s *Server) Stop() error {
	if s == nil {
		return nil
	}
	var err error
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(s.stopSig)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
			err = fmt.Errorf("%s did not stop within 30s: killed", filepath.Base(s.cmd.Path))
		}
	}
	if rerr := os.RemoveAll(s.Dir); err == nil {
		err = rerr
	}
	return err
}

// newServer returns a Server, not started, with a temporary directory of
// its own and a loopback port that was free a moment ago; Stop ends it with
// stopSig.
func newServer(name string, stopSig os.Signal) (*Server, error) {
	dir, err := os.MkdirTemp("", "presencebench-"+name+"-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer ln.Close()
	return &Server{Addr: ln.Addr().String(), Dir: dir, stopSig: stopSig}, nil
}

// port is the port of s.Addr.
func (s *Server) port() string { return s.Addr[strings.LastIndexByte(s.Addr, ':')+1:] }

// waitTCP waits until addr accepts connections or the process exits.
func (s *Server) waitTCP(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-s.exited:
			s.exited <- err // Stop waits on it too
			return fmt.Errorf("%s exited before accepting connections: %v", filepath.Base(s.cmd.Path), err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections on %s after %v", filepath.Base(s.cmd.Path), s.Addr, timeout)
		}
	}
}

func (s *Server) start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// The server dies with the bench, however the bench ends.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	s.cmd = cmd
	if err := cmd.Start(); err != nil {
		return err
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- cmd.Wait() }()
	return nil
}

// StartRedis starts Debian's redis-server on a free loopback port, without
// persistence, in a temporary directory. It returns an error matching
// ErrNotInstalled when redis-server is not found.
func StartRedis(ctx context.Context) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server: %w (apt-get install redis-server)", ErrNotInstalled)
	}
	s, err := newServer("redis", syscall.SIGTERM)
	if err != nil {
		return nil, err
	}
	dir, port := s.Dir, s.port()
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin,
		"--bind", "127.0.0.1", "--port", port, "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
		"--logfile", "", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := s.start(cmd); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.waitTCP(ctx, 20*time.Second); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// postgresBin finds a PostgreSQL server program: on PATH, else in Debian's
// /usr/lib/postgresql/<version>/bin, newest version first.
func postgresBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w (apt-get install postgresql)", name, ErrNotInstalled)
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// StartPostgres creates a temporary cluster with initdb and starts
// PostgreSQL on a free loopback port, with its unix socket in the cluster's
// directory and durability off (fsync, synchronous commit and full page
// writes: the bench needs no crash safety, like Redis without persistence).
// Run as root, it runs them as the postgres user, since PostgreSQL refuses
// root. It returns an error matching ErrNotInstalled when initdb or postgres
// is not found.
func StartPostgres(ctx context.Context) (*Server, error) {
	initdb, err := postgresBin("initdb")
	if err != nil {
		return nil, err
	}
	postgres, err := postgresBin("postgres")
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL needs a non-root user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	s, err := newServer("pg", syscall.SIGINT)
	if err != nil {
		return nil, err
	}
	dir, port := s.Dir, s.port()
	s.Socket = dir
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	init := exec.CommandContext(ctx, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := init.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, lastLines(string(out), 5))
	}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, postgres, "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+port,
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=1GB", "-c", "work_mem=64MB", "-c", "maintenance_work_mem=512MB",
		"-c", "max_wal_size=8GB", "-c", "checkpoint_timeout=30min",
		"-c", "jit=off") // JIT compiling a 1 ms query costs more than it saves
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := s.start(cmd); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.waitTCP(ctx, 60*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
		_ = s.Stop()
		return nil, fmt.Errorf("%w: %s", err, lastLines(string(log), 5))
	}
	return s, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
