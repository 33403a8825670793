// Package testenv holds what several packages' tests and the bench programs
// share: polling for a condition with a deadline, a real embedded NATS server
// with JetStream on a random loopback port, a buffer safe for concurrent
// writers, and reading a series from /metrics. The service never imports it.
package testenv
