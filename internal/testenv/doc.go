// Package testenv holds what several packages' tests share: polling for a
// condition with a deadline, and a real embedded NATS server with JetStream
// on a random loopback port. Only tests import it.
package testenv
