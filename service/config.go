package service

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/presenced/presenced/cluster"
)

// Config is everything the presenced program can be told, one field per flag
// (contract section 5). The zero value is not useful: start from Defaults.
type Config struct {
	HTTPAddr string // GraphQL, metrics and health; "127.0.0.1:0" picks a port
	// NATSURL is an external NATS server, or several servers of one NATS
	// cluster, comma-separated; empty starts the embedded one.
	NATSURL    string
	NATSListen string // where the embedded server listens; port 0 or -1 picks one
	NATSConfig string // nats-server config file for the embedded server (accounts, permissions)
	// NATSUser and NATSPassword, or NATSCreds (a credentials file), are how
	// presenced authenticates to NATS, embedded or external; empty: no auth.
	NATSUser      string
	NATSPassword  string
	NATSCreds     string
	DataDir       string // embedded JetStream store and engine snapshots
	SubjectPrefix string
	Stream        string
	StreamMaxAge  time.Duration // retention of the stream when presenced creates it; 0 keeps all
	Tokens        string        // tokens file; empty is open mode
	InsecureOpen  bool          // allow open mode on a non-loopback HTTP address
	SessionTTL    time.Duration // 0: sessions never expire
	MaxClockSkew  time.Duration
	// SnapshotInterval is how often the engine state is written to DataDir;
	// 0 writes only at shutdown.
	SnapshotInterval time.Duration
	// RateLimit is the number of GraphQL requests per second allowed to one
	// token (one tenant in open mode), with a burst of as many; 0 is no
	// limit, the default.
	RateLimit float64
	// Simulate publishes a live simulation of this many agents of tenant
	// "default"; 0 is off.
	Simulate int
	LogLevel string // debug, info, warn or error

	// Several instances on one NATS system (contract section 7).
	//
	// Partitions is how many partitions the tenants are split into; it is
	// the stream's, fixed when presenced creates it.
	Partitions int
	// Copies is how many running instances hold each partition (all of
	// them when fewer run).
	Copies int
	// StreamReplicas is the replicas of every stream, bucket and object
	// store presenced creates (3 on a 3-node cluster).
	StreamReplicas int
	// Instance names this instance, unique among those of the stream;
	// empty: the host name and the HTTP port (host-port).
	Instance string
}

// Defaults returns the configuration of contract section 5's defaults.
func Defaults() Config {
	return Config{
		HTTPAddr:         "127.0.0.1:8080",
		NATSListen:       "127.0.0.1:4222",
		DataDir:          "./data",
		SubjectPrefix:    "presence",
		Stream:           "PRESENCE",
		StreamMaxAge:     24 * time.Hour,
		MaxClockSkew:     5 * time.Minute,
		SnapshotInterval: 30 * time.Second,
		LogLevel:         "info",
		Partitions:       1,
		Copies:           cluster.DefaultCopies,
		StreamReplicas:   1,
	}
}

// EnvPrefix starts the environment variable of every flag: -http-addr is
// PRESENCE_HTTP_ADDR.
const EnvPrefix = "PRESENCE_"

// EnvName returns the environment variable that sets flag name.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ParseFlags fills cfg from args, then, for each flag not given in args, from
// its environment variable as getenv reports it. A flag on the command line
// wins over the environment.
func ParseFlags(cfg *Config, fs *flag.FlagSet, args []string, getenv func(string) string) error {
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "address of GraphQL, /metrics, /healthz and /readyz")
	fs.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "URL of an external NATS server; empty starts the embedded one")
	fs.StringVar(&cfg.NATSListen, "nats-listen", cfg.NATSListen, "where the embedded NATS server listens")
	fs.StringVar(&cfg.NATSConfig, "nats-config", cfg.NATSConfig, "nats-server config file for the embedded server (accounts, users, permissions)")
	fs.StringVar(&cfg.NATSUser, "nats-user", cfg.NATSUser, "user presenced connects to NATS as")
	fs.StringVar(&cfg.NATSPassword, "nats-password", cfg.NATSPassword, "password of -nats-user (prefer "+EnvName("nats-password")+")")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", cfg.NATSCreds, "NATS credentials file (JWT and seed) presenced connects with")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory of the embedded JetStream store and the engine snapshots")
	fs.StringVar(&cfg.SubjectPrefix, "subject-prefix", cfg.SubjectPrefix, "events are read from <prefix>.<tenant>.<type>")
	fs.StringVar(&cfg.Stream, "stream", cfg.Stream, "JetStream stream of the events (dead letters go to <stream>_DEADLETTER)")
	fs.DurationVar(&cfg.StreamMaxAge, "stream-max-age", cfg.StreamMaxAge, "retention of the streams when presenced creates them; 0 keeps everything")
	fs.StringVar(&cfg.Tokens, "tokens", cfg.Tokens, "tokens file (<tenant> <sha256 of token> per line); empty is open mode")
	fs.BoolVar(&cfg.InsecureOpen, "insecure-open", cfg.InsecureOpen, "allow open mode (no tokens) on a non-loopback HTTP address")
	fs.DurationVar(&cfg.SessionTTL, "session-ttl", cfg.SessionTTL, "disconnect a user with no event for this long; 0 never does")
	fs.DurationVar(&cfg.MaxClockSkew, "max-clock-skew", cfg.MaxClockSkew, "reject an event whose ts is further than this after its stored time")
	fs.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", cfg.SnapshotInterval, "how often to write an engine snapshot; 0 only at shutdown")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", cfg.RateLimit, "GraphQL requests per second per token (per tenant in open mode); 0 is no limit")
	fs.IntVar(&cfg.Simulate, "simulate", cfg.Simulate, "publish a live simulation of N agents of tenant default")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of the tenants, fixed when presenced creates the stream")
	fs.IntVar(&cfg.Copies, "copies", cfg.Copies, "running instances holding each partition (all of them when fewer run)")
	fs.IntVar(&cfg.StreamReplicas, "stream-replicas", cfg.StreamReplicas, "replicas of the streams, buckets and object store presenced creates (3 on a 3-node cluster)")
	fs.StringVar(&cfg.Instance, "instance", cfg.Instance, "this instance's name, unique among those of the stream; empty: the host name and the HTTP port (host-port)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(EnvName(f.Name))
		if given[f.Name] || v == "" {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
		}
	})
	return errors.Join(errs...)
}

// Validate checks cfg and says which field breaks which rule.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, rule string) { errs = append(errs, fmt.Errorf("-%s: %s", flag, rule)) }
	if c.HTTPAddr == "" {
		bad("http-addr", "is required")
	}
	if c.NATSURL == "" && c.NATSListen == "" {
		bad("nats-listen", "is required when -nats-url is empty")
	}
	if c.NATSURL != "" && c.NATSConfig != "" {
		bad("nats-config", "configures the embedded server, so it cannot go with -nats-url")
	}
	if c.NATSCreds != "" && c.NATSUser != "" {
		bad("nats-creds", "cannot go with -nats-user: choose one way to authenticate")
	}
	if (c.NATSUser == "") != (c.NATSPassword == "") {
		bad("nats-user", "and -nats-password go together")
	}
	if c.DataDir == "" {
		bad("data-dir", "is required")
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"stream-max-age", c.StreamMaxAge}, {"session-ttl", c.SessionTTL}, {"max-clock-skew", c.MaxClockSkew}, {"snapshot-interval", c.SnapshotInterval}} {
		if d.v < 0 {
			bad(d.flag, "must not be negative")
		}
	}
	if c.RateLimit < 0 {
		bad("rate-limit", "must not be negative")
	}
	if c.Simulate < 0 {
		bad("simulate", "must not be negative")
	}
	if c.Partitions < 1 {
		bad("partitions", "must be at least 1")
	}
	if c.Copies < 1 {
		bad("copies", "must be at least 1")
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		bad("stream-replicas", "must be from 1 to 5 (JetStream's limit)")
	}
	if c.Instance != "" && !validInstance(c.Instance) {
		bad("instance", "must be 1 to 128 characters of A-Z a-z 0-9 _ - . (it is a key of the members bucket)")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "must be debug, info, warn or error")
	}
	return errors.Join(errs...)
}

// validInstance reports whether name can be a key of the members bucket.
func validInstance(name string) bool {
	if len(name) == 0 || len(name) > 128 {
		return false
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.", r)
		if !ok {
			return false
		}
	}
	return strings.Trim(name, ".") == name
}

// instanceName is -instance, or the host name and the port of httpAddr
// (the address the HTTP server got), as host-port: a key of the members
// bucket takes no colon.
func (c *Config) instanceName(httpAddr string) (string, error) {
	if c.Instance != "" {
		return c.Instance, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("-instance: empty, and the host name is unknown: %w", err)
	}
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "", fmt.Errorf("-instance: %w", err)
	}
	name := host + "-" + port
	if !validInstance(name) {
		return "", fmt.Errorf("-instance: the host name and port %q cannot name an instance: set -instance", name)
	}
	return name, nil
}
