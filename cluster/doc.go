// Package cluster runs presenced as one of several instances on a NATS
// system (contract section 7): who is running (a JetStream key-value bucket
// of members whose keys expire unless refreshed), which instances hold which
// partitions (rendezvous hashing over the live members, the same on every
// instance), and the requests for tenants held elsewhere (NATS
// request-reply through nats.go's micro services). Nothing else connects
// the instances: no membership or replication protocol of its own.
package cluster
