// Package wsclient is a graphql-transport-ws client for tests and
// benchmarks: it speaks the protocol frame by frame over
// github.com/coder/websocket and hands over every message it receives, with
// its arrival time, in order. It hides nothing of the protocol: the test
// sends connection_init, subscribe, complete, ping... itself.
//
// A Conn is safe for one reader of its messages and concurrent senders.
package wsclient
