// Command cluster runs a whole presenced service on one machine, for trying
// scale-out (contract section 7): a NATS cluster of three nodes (the server
// from the nats-server module, JetStream replicated three times) and three
// presenced instances on loopback, sharing the tenants' partitions, with a
// simulation of agents in several tenants. It prints where everything is.
//
//	go run ./examples/cluster
//
// Everything it writes is under -dir (data-cluster): the NATS stores, each
// instance's data dir and log. Kill an instance with kill -9 to watch the
// others take its partitions; it prints the command that starts it again.
// Ctrl-C stops the instances (SIGTERM: each hands its partitions over) and
// then the NATS nodes.
package main
