// Package testenv holds what several packages' tests and the bench programs
// share: polling for a condition with a deadline, a real embedded NATS server
// with JetStream on a random loopback port, a buffer safe for concurrent
// writers, reading a series from /metrics, and a filter as GraphQL input.
// The service never imports it.
package testenv
