package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures the embedded NATS server started by StartServer.
type ServerConfig struct {
	// Listen is the host:port clients connect to. A port of 0 or -1 picks a
	// free port (for tests). Empty means "127.0.0.1:4222".
	Listen string
	// StoreDir is the directory of the JetStream store. Required.
	StoreDir string
	// ConfigFile is a standard nats-server configuration file, loaded first
	// for accounts, users and permissions. Listen and StoreDir override what
	// it says about the listen address and the store, and JetStream is always
	// on. Empty means no file: one account, no authentication.
	ConfigFile string
	// Logger receives the server's warnings and errors. Nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections,
	// which includes recovering the JetStream store. Zero means 30s.
	ReadyTimeout time.Duration
	// Cluster makes the server a node of a NATS cluster, with replicated
	// JetStream. Zero is a server of its own.
	Cluster ClusterConfig
}

// ClusterConfig is what a node of a NATS cluster needs: the cluster's name,
// its own name, where it listens for routes, and the routes to the others.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node. Empty: no cluster.
	Name string
	// NodeName is the server's name, unique in the cluster. Required with
	// Name.
	NodeName string
	// Listen is the host:port the node listens on for the others' routes.
	Listen string
	// Routes are the nats-route:// URLs of the other nodes (or of all, the
	// node's own included: a route to itself is ignored).
	Routes []string
}

// StartServer starts an in-process NATS server with JetStream and waits until
// it accepts connections. It returns the server and its client URL; the caller
// stops it with Shutdown. The server installs no signal handlers: the program
// that embeds it owns the process's signals.
func StartServer(cfg ServerConfig) (*server.Server, string, error) {
	if cfg.StoreDir == "" {
		return nil, "", fmt.Errorf("%w: StoreDir is required", ErrConfig)
	}
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:4222"
	}
	host, port, err := splitHostPort(listen)
	if err != nil {
		return nil, "", fmt.Errorf("%w: Listen %q: %v", ErrConfig, listen, err)
	}

	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		opts, err = server.ProcessConfigFile(cfg.ConfigFile)
		if err != nil {
			return nil, "", fmt.Errorf("%w: ConfigFile %s: %w", ErrServer, cfg.ConfigFile, err)
		}
	}
	opts.Host = host
	opts.Port = port
	opts.JetStream = true
	opts.StoreDir = cfg.StoreDir
	opts.NoSigs = true
	if c := cfg.Cluster; c.Name != "" {
		if c.NodeName == "" {
			return nil, "", fmt.Errorf("%w: Cluster.NodeName is required with Cluster.Name", ErrConfig)
		}
		chost, cport, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, "", fmt.Errorf("%w: Cluster.Listen %q: %v", ErrConfig, c.Listen, err)
		}
		opts.ServerName = c.NodeName
		opts.Cluster.Name = c.Name
		opts.Cluster.Host = chost
		opts.Cluster.Port = cport
		opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	}

	s, err := server.NewServer(opts)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrServer, err)
	}
	logger := &serverLogger{log: cfg.Logger}
	// Debug and trace stay off: the adapter drops those levels anyway, and
	// leaving them off spares the server formatting them.
	s.SetLoggerV2(logger, false, false, false)

	go s.Start()

	timeout := cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Start reports a failure (JetStream store unusable, bad system
	// account...) through Fatalf and gives up; poll for it so that such an
	// error comes back at once rather than as a timeout.
	for !s.ReadyForConnections(100 * time.Millisecond) {
		if msg := logger.fatal(); msg != "" {
			s.Shutdown()
			return nil, "", fmt.Errorf("%w: %s", ErrServer, msg)
		}
		if ctx.Err() != nil {
			s.Shutdown()
			return nil, "", fmt.Errorf("%w: not ready for connections after %v", ErrServer, timeout)
		}
	}
	return s, s.ClientURL(), nil
}

// splitHostPort splits a listen address, reading port 0 as a free port
// (nats-server reads it as its default port).
func splitHostPort(listen string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, errors.New("port must be a number from -1 to 65535")
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// serverLogger routes the server's log to slog: warnings and errors only,
// since its notices are chatty and its debug lines are for NATS developers.
type serverLogger struct {
	log *slog.Logger

	mu       sync.Mutex
	fatalMsg string
}

var _ server.Logger = (*serverLogger)(nil)

func (l *serverLogger) Noticef(string, ...any) {}
func (l *serverLogger) Debugf(string, ...any)  {}
func (l *serverLogger) Tracef(string, ...any)  {}

func (l *serverLogger) Warnf(format string, v ...any) {
	if l.log != nil {
		l.log.Warn(fmt.Sprintf(format, v...), "component", "nats-server")
	}
}

func (l *serverLogger) Errorf(format string, v ...any) {
	if l.log != nil {
		l.log.Error(fmt.Sprintf(format, v...), "component", "nats-server")
	}
}

// Fatalf must not exit the process as the server's own logger does: the
// embedding program decides. StartServer reports the message as an error.
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if l.fatalMsg == "" {
		l.fatalMsg = msg
	}
	l.mu.Unlock()
	if l.log != nil {
		l.log.Error(msg, "component", "nats-server")
	}
}

func (l *serverLogger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalMsg
}
