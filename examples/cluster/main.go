package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/publish"
	"github.com/presenced/presenced/simulate"
)

// size is how many NATS nodes and presenced instances the cluster has: three
// is the smallest NATS cluster that keeps an R3 stream writable when a node
// is lost.
const size = 3

// options is what the flags set.
type options struct {
	dir        string   // everything the cluster writes: NATS stores, instance data, logs
	presenced  string   // the program; empty builds ./cmd/presenced into dir
	tenants    []string // the simulated tenants
	agents     int      // simulated agents per tenant
	partitions int
	copies     int
	natsPorts  []int // client port of each NATS node
	routePorts []int // route port of each NATS node
	httpPorts  []int // HTTP port of each instance
}

func main() {
	o := options{}
	var tenants string
	var natsPort, routePort, httpPort int
	flag.StringVar(&o.dir, "dir", "data-cluster", "directory of the NATS stores, the instances' data and their logs")
	flag.StringVar(&o.presenced, "presenced", "", "the presenced program to run; empty builds ./cmd/presenced with go build")
	flag.StringVar(&tenants, "tenants", "acme,globex,initech,umbrella", "the simulated tenants, comma-separated")
	flag.IntVar(&o.agents, "agents", 200, "simulated agents per tenant")
	flag.IntVar(&o.partitions, "partitions", 8, "presenced -partitions")
	flag.IntVar(&o.copies, "copies", 2, "presenced -copies")
	flag.IntVar(&natsPort, "nats-port", 4222, "client port of the first NATS node; the others take the next ones")
	flag.IntVar(&routePort, "route-port", 6222, "route port of the first NATS node; the others take the next ones")
	flag.IntVar(&httpPort, "http-port", 8080, "HTTP port of the first instance; the others take the next ones")
	flag.Parse()
	o.tenants = strings.Split(tenants, ",")
	for i := range size {
		o.natsPorts = append(o.natsPorts, natsPort+i)
		o.routePorts = append(o.routePorts, routePort+i)
		o.httpPorts = append(o.httpPorts, httpPort+i)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

// run starts the NATS nodes, the instances and the simulation, tells out
// where they are, and stops them all when ctx ends: the instances first
// (SIGTERM, each hands its partitions over), then the nodes.
func run(ctx context.Context, o options, out io.Writer) error {
	for _, sub := range []string{"nats", "instances", "logs"} {
		if err := os.MkdirAll(filepath.Join(o.dir, sub), 0o755); err != nil {
			return err
		}
	}
	bin := o.presenced
	if bin == "" {
		bin = filepath.Join(o.dir, "presenced")
		fmt.Fprintln(out, "building ./cmd/presenced ...")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/presenced/presenced/cmd/presenced")
		if msg, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %w\n%s", err, msg)
		}
	}

	nodes, err := startNodes(o)
	if err != nil {
		return err
	}
	defer func() {
		for _, n := range nodes {
			n.Shutdown()
			n.WaitForShutdown()
		}
	}()
	urls := make([]string, size)
	for i, port := range o.natsPorts {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(port)
	}
	natsURLs := strings.Join(urls, ",")

	instances := make([]*instance, size)
	exits := make(chan *instance, size) // each instance, once it has exited
	for i := range size {
		name := string(rune('a' + i))
		inst, err := startInstance(bin, name, o.httpPorts[i], filepath.Join(o.dir, "logs", name+".log"), exits,
			"-nats-url", natsURLs,
			"-http-addr", "127.0.0.1:"+strconv.Itoa(o.httpPorts[i]),
			"-data-dir", filepath.Join(o.dir, "instances", name),
			"-partitions", strconv.Itoa(o.partitions),
			"-copies", strconv.Itoa(o.copies),
			"-stream-replicas", strconv.Itoa(size),
			"-instance", name)
		if err != nil {
			stopInstances(instances[:i])
			return err
		}
		instances[i] = inst
	}
	defer stopInstances(instances)

	simErr := make(chan error, 1)
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	go func() { simErr <- simulateTenants(simCtx, natsURLs, o.tenants, o.agents) }()

	for _, inst := range instances {
		if err := inst.waitReady(ctx, time.Minute); err != nil {
			return err
		}
	}
	printCluster(out, natsURLs, o, instances)

	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "stopping: the instances (SIGTERM), then the NATS nodes")
			return nil
		case err := <-simErr:
			return fmt.Errorf("simulation: %w", err)
		case inst := <-exits:
			fmt.Fprintf(out, "instance %s exited (%v); start it again with:\n  %s\n", inst.name, inst.waitErr, inst.commandLine())
		}
	}
}

// startNodes starts the NATS nodes, all before any is waited for: a node of
// a cluster accepts clients only once it has met the others.
func startNodes(o options) ([]*server.Server, error) {
	var routes []string
	for _, port := range o.routePorts {
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(port))
	}
	nodes := make([]*server.Server, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		wg.Go(func() {
			name := "n" + strconv.Itoa(i+1)
			nodes[i], _, errs[i] = ingest.StartServer(ingest.ServerConfig{
				Listen:   "127.0.0.1:" + strconv.Itoa(o.natsPorts[i]),
				StoreDir: filepath.Join(o.dir, "nats", name),
				Cluster: ingest.ClusterConfig{Name: "presenced-example", NodeName: name,
					Listen: "127.0.0.1:" + strconv.Itoa(o.routePorts[i]), Routes: routes},
				ReadyTimeout: time.Minute,
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, n := range nodes {
			if n != nil {
				n.Shutdown()
			}
		}
		return nil, fmt.Errorf("starting the NATS nodes: %w", err)
	}
	return nodes, nil
}

// simulateTenants publishes a simulation of agents per tenant, as a desk
// backend would, through the cluster's nodes.
func simulateTenants(ctx context.Context, urls string, tenants []string, agents int) error {
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	pub, err := publish.New(js, "presence")
	if err != nil {
		return err
	}
	errs := make(chan error, len(tenants))
	for _, tenant := range tenants {
		go func() {
			errs <- simulate.Run(ctx, simulate.Config{Agents: agents, Tenant: tenant, Publisher: pub})
		}()
	}
	var all []error
	for range tenants {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

func printCluster(out io.Writer, natsURLs string, o options, instances []*instance) {
	fmt.Fprintf(out, "\nNATS cluster (JetStream, R%d): %s\n", size, natsURLs)
	fmt.Fprintf(out, "presenced: %d partitions, %d copies each; tenants %s (%d agents each)\n\n",
		o.partitions, o.copies, strings.Join(o.tenants, ", "), o.agents)
	for _, inst := range instances {
		fmt.Fprintf(out, "instance %s  pid %-7d  dashboard http://%s/  GraphQL http://%s/graphql  metrics http://%s/metrics  log %s\n",
			inst.name, inst.cmd.Process.Pid, inst.addr, inst.addr, inst.addr, inst.logPath)
	}
	fmt.Fprintf(out, "\nAny instance answers any tenant (put the tenant in the dashboard's box, or send X-Tenant-Id):\n")
	fmt.Fprintf(out, "  curl -s http://%s/graphql -H 'X-Tenant-Id: %s' -H 'Content-Type: application/json' \\\n", instances[0].addr, o.tenants[0])
	fmt.Fprintf(out, "    -d '{\"query\":\"{ connectedUsersIndicator { connectedUsersCount } }\"}'\n")
	fmt.Fprintf(out, "Try kill -9 on an instance's pid: its partitions are held again by the others within seconds.\n")
	fmt.Fprintf(out, "Ctrl-C stops everything.\n\n")
}

// instance is a presenced process of the cluster.
type instance struct {
	name, addr, logPath string
	args                []string
	cmd                 *exec.Cmd
	done                chan struct{} // closed once the process has exited
	waitErr             error         // how it exited, once done is closed
}

// startInstance starts bin with args as the instance name, its output in
// logPath; once it has exited, it is sent on exits.
func startInstance(bin, name string, port int, logPath string, exits chan<- *instance, args ...string) (*instance, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	inst := &instance{name: name, addr: "127.0.0.1:" + strconv.Itoa(port), logPath: logPath,
		args: append([]string{bin}, args...), done: make(chan struct{})}
	inst.cmd = exec.Command(bin, args...)
	inst.cmd.Stdout, inst.cmd.Stderr = logFile, logFile
	if err := inst.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("instance %s: %w", name, err)
	}
	go func() {
		inst.waitErr = inst.cmd.Wait()
		logFile.Close()
		close(inst.done)
		exits <- inst
	}()
	return inst, nil
}

// waitReady polls /readyz until it answers 200.
func (inst *instance) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + inst.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-inst.done:
			return fmt.Errorf("instance %s exited (%v); see %s", inst.name, inst.waitErr, inst.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("instance %s not ready after %v; see %s", inst.name, timeout, inst.logPath)
		}
	}
}

func (inst *instance) commandLine() string { return strings.Join(inst.args, " ") }

// stopInstances sends SIGTERM to every running instance and waits for each
// (killing one that takes longer than a handover can).
func stopInstances(instances []*instance) {
	for _, inst := range instances {
		if inst != nil {
			inst.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, inst := range instances {
		if inst == nil {
			continue
		}
		select {
		case <-inst.done:
		case <-time.After(45 * time.Second):
			inst.cmd.Process.Kill()
			<-inst.done
		}
	}
}
