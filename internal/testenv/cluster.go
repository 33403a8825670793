package testenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/ingest"
)

// Cluster is a NATS cluster of nodes in the test's process, with JetStream
// replicated among them, on loopback ports that stay the same across a
// node's restart (as nats-server's own tests build one).
type Cluster struct {
	tb    testing.TB
	name  string
	nodes []*Node
}

// Node is one server of a Cluster.
type Node struct {
	Name   string
	URL    string         // nats://127.0.0.1:port, the same after a restart
	Server *server.Server // nil while stopped
	cfg    ingest.ServerConfig
}

// StartCluster starts n nodes (3 for replicated streams), waits until
// JetStream can place a stream of n replicas, and stops them at the end of
// the test.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb, name: "presenced-test"}
	var routes []string
	for i := range n {
		clientPort, routePort := FreePort(tb), FreePort(tb)
		node := &Node{Name: fmt.Sprintf("n%d", i+1), URL: "nats://127.0.0.1:" + strconv.Itoa(clientPort)}
		node.cfg = ingest.ServerConfig{
			Listen:   "127.0.0.1:" + strconv.Itoa(clientPort),
			StoreDir: tb.TempDir(),
			Cluster: ingest.ClusterConfig{Name: c.name, NodeName: node.Name,
				Listen: "127.0.0.1:" + strconv.Itoa(routePort)},
			ReadyTimeout: time.Minute,
		}
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(routePort))
		c.nodes = append(c.nodes, node)
	}
	// Every node starts before any waits for it: a node of a cluster is
	// ready for clients only once it has met the others.
	errs := make(chan error, n)
	for _, node := range c.nodes {
		node.cfg.Cluster.Routes = routes
		go func() { errs <- c.start(node) }()
	}
	for range n {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() {
		for _, node := range c.nodes {
			c.Stop(node)
		}
	})
	c.WaitReplicated(n)
	return c
}

func (c *Cluster) start(node *Node) error {
	srv, _, err := ingest.StartServer(node.cfg)
	if err != nil {
		return fmt.Errorf("node %s: %w", node.Name, err)
	}
	node.Server = srv
	return nil
}

// Nodes are the cluster's nodes, in the order they were made.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// URLs is the client URL of every node, comma-separated, as -nats-url takes
// them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.URL
	}
	return strings.Join(urls, ",")
}

// Stop shuts node down (a NATS node lost); it may be started again.
func (c *Cluster) Stop(node *Node) {
	if node.Server == nil {
		return
	}
	node.Server.Shutdown()
	node.Server.WaitForShutdown()
	node.Server = nil
}

// Restart starts a stopped node again, on the same ports and store, and
// waits until the cluster can place a stream of every node again.
func (c *Cluster) Restart(node *Node) {
	c.tb.Helper()
	if err := c.start(node); err != nil {
		c.tb.Fatal(err)
	}
	c.WaitReplicated(len(c.nodes))
}

// WaitReplicated waits until JetStream, asked through any running node, can
// place a stream of replicas replicas: the cluster has a meta leader and
// that many nodes with JetStream.
func (c *Cluster) WaitReplicated(replicas int) {
	c.tb.Helper()
	deadline := time.Now().Add(WaitTimeout)
	name := fmt.Sprintf("TESTENV_PROBE_%d", time.Now().UnixNano())
	for {
		err := c.probe(name, replicas)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("the cluster cannot place a stream of %d replicas after %v: %v", replicas, WaitTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) probe(name string, replicas int) error {
	var url string
	for _, n := range c.nodes {
		if n.Server != nil {
			url = n.URL
		}
	}
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"testenv.probe." + name},
		Replicas: replicas, Storage: jetstream.MemoryStorage}); err != nil {
		return err
	}
	return js.DeleteStream(ctx, name)
}

// FreePort returns a TCP port of loopback that was free a moment ago and
// that it has not returned before in this process.
func FreePort(tb testing.TB) int {
	tb.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// The kernel may give a port it gave a moment ago, once closed:
		// examples/cluster.TestCluster once had an instance's HTTP port
		// equal to a NATS node's. A port is handed out once per process.
		handedOutMu.Lock()
		fresh := !handedOut[port]
		handedOut[port] = true
		handedOutMu.Unlock()
		if fresh {
			return port
		}
	}
}

var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{} // the ports FreePort returned
)
