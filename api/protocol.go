package api

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/coder/websocket"
)

// WSProtocol is the WebSocket subprotocol of GET /graphql: graphql-transport-ws,
// the protocol of the npm graphql-ws client (contract 6.2).
const WSProtocol = "graphql-transport-ws"

// Close codes of a GraphQL WebSocket: those of graphql-transport-ws, the
// slow-client code of contract 6.2, and the standard going-away code of a
// shutdown.
const (
	CloseBadMessage      websocket.StatusCode = 4400 // a message that breaks the protocol
	CloseUnauthorized    websocket.StatusCode = 4401 // subscribe before connection_ack
	CloseForbidden       websocket.StatusCode = 4403 // missing or unknown token in connection_init
	CloseSubprotocol     websocket.StatusCode = 4406 // graphql-transport-ws not offered
	CloseInitTimeout     websocket.StatusCode = 4408 // no connection_init in time
	CloseDuplicateID     websocket.StatusCode = 4409 // subscribe with an id in use
	CloseTooManyRequests websocket.StatusCode = 4429 // a second connection_init, or a client that does not read
	CloseGoingAway                            = websocket.StatusGoingAway
)

// maxIDBytes bounds the id of an operation.
const maxIDBytes = 256

// message is a graphql-transport-ws message as the server writes it.
type message struct {
	ID      string `json:"id,omitempty"`
	Type    string `json:"type"`
	Payload any    `json:"payload,omitempty"`
}

func (k *socket) sendMessage(m message) bool {
	data, err := json.Marshal(m)
	if err != nil { // a bug: every payload is JSON
		k.srv.log.Error("api: encoding a WebSocket message", "err", err)
		return false
	}
	return k.send(outgoing{data: data})
}

// inMessage is a graphql-transport-ws message as a client writes it.
type inMessage struct {
	Type    string          `json:"type"`
	ID      *string         `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

// subscribePayload is the payload of a subscribe message.
type subscribePayload struct {
	Query         *string        `json:"query"`
	OperationName *string        `json:"operationName"`
	Variables     map[string]any `json:"variables"`
	Extensions    map[string]any `json:"extensions"`
}

// handle acts on one message of the client.
func (k *socket) handle(data []byte) {
	bad := func(rule string) { k.close(CloseBadMessage, "Invalid message received: "+rule, dropProtocol) }
	var m inMessage
	if err := json.Unmarshal(data, &m); err != nil {
		bad("want a JSON object {type, id, payload}")
		return
	}
	switch m.Type {
	case "connection_init":
		if k.initReceived {
			k.close(CloseTooManyRequests, "Too many initialisation requests", dropProtocol)
			return
		}
		k.initReceived = true
		if !isObject(m.Payload) {
			bad("connection_init: payload must be an object")
			return
		}
		id, code, reason := k.authenticate(m.Payload)
		if code != 0 {
			drop := dropProtocol
			if code == CloseForbidden {
				drop = dropForbidden
			}
			k.close(code, reason, drop)
			return
		}
		k.id = id
		k.acked.Store(true)
		k.sendMessage(message{Type: "connection_ack"})
	case "ping":
		if !isObject(m.Payload) {
			bad("ping: payload must be an object")
			return
		}
		pong := message{Type: "pong"}
		if len(m.Payload) > 0 && !bytes.Equal(m.Payload, []byte("null")) {
			pong.Payload = m.Payload
		}
		k.sendMessage(pong)
	case "pong":
		// An answer to a ping of ours, or a unidirectional heartbeat.
	case "subscribe":
		if !k.acked.Load() {
			k.close(CloseUnauthorized, "Unauthorized", dropProtocol)
			return
		}
		if m.ID == nil || *m.ID == "" || len(*m.ID) > maxIDBytes {
			bad("subscribe: id must be a string of 1 to " + strconv.Itoa(maxIDBytes) + " bytes")
			return
		}
		var p subscribePayload
		if !isObject(m.Payload) || len(m.Payload) == 0 || json.Unmarshal(m.Payload, &p) != nil {
			bad("subscribe: payload must be an object {query, operationName, variables, extensions}")
			return
		}
		if p.Query == nil {
			bad("subscribe: payload.query is required")
			return
		}
		k.subscribe(*m.ID, p)
	case "complete":
		if m.ID == nil || *m.ID == "" {
			bad("complete: id is required")
			return
		}
		k.mu.Lock()
		op := k.ops[*m.ID]
		delete(k.ops, *m.ID)
		k.mu.Unlock()
		if op != nil {
			op.cancel() // the client stopped listening: no complete goes back
		}
	default:
		bad("unknown type " + strconv.Quote(truncate(m.Type, 32)))
	}
}

// isObject reports whether raw is absent, null or a JSON object.
func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null")) || raw[0] == '{'
}

// authenticate resolves the identity of a connection_init payload by
// contract 6.2 (see identify): in token mode the payload's Authorization
// (key matched case-insensitively) carries the bearer token; in open mode
// the tenant is the payload's X-Tenant-Id, else the upgrade request's, else
// "default". On failure it returns the close code and reason.
func (k *socket) authenticate(payload json.RawMessage) (identity, websocket.StatusCode, string) {
	var fields map[string]json.RawMessage
	if len(bytes.TrimSpace(payload)) > 0 {
		if err := json.Unmarshal(payload, &fields); err != nil {
			return identity{}, CloseBadMessage, "Invalid message received: connection_init: payload must be an object"
		}
	}
	s := k.srv
	var id identity
	var fail authFailure
	if s.tokens != nil {
		v, _, ok := stringField(fields, "Authorization")
		if !ok {
			return identity{}, CloseBadMessage, "Invalid message received: connection_init: Authorization given more than once"
		}
		id, fail = s.identify(v, nil, false)
	} else {
		v, found, ok := stringField(fields, TenantHeader)
		if !ok {
			return identity{}, CloseBadMessage, "Invalid message received: connection_init: " + TenantHeader + " given more than once"
		}
		if found {
			id, fail = s.identify("", []string{v}, true)
		} else {
			id, fail = s.identify("", k.header, k.headerSet)
		}
	}
	switch fail {
	case authNoToken, authUnknownToken:
		s.logRefused(context.Background(), "api: WebSocket refused", fail, "remote", k.remote)
		if fail == authNoToken {
			return identity{}, CloseForbidden, "Forbidden: connection_init payload needs Authorization: Bearer <token>"
		}
		return identity{}, CloseForbidden, "Forbidden: unknown bearer token"
	case authTenantTwice: // only the header can hold more than one
		return identity{}, CloseBadMessage, "Invalid message received: " + TenantHeader + " header: must be given once"
	case authBadTenant:
		return identity{}, CloseBadMessage, "Invalid message received: " + TenantHeader + ": " + tenantRule
	}
	return id, 0, ""
}

// stringField finds the key of fields equal to name, case-insensitively.
// found is false when there is none or its value is not a string; ok is
// false when several keys match.
func stringField(fields map[string]json.RawMessage, name string) (v string, found, ok bool) {
	var keys []string
	for key := range fields {
		if strings.EqualFold(key, name) {
			keys = append(keys, key)
		}
	}
	switch len(keys) {
	case 0:
		return "", false, true
	case 1:
	default:
		return "", false, false
	}
	if err := json.Unmarshal(fields[keys[0]], &v); err != nil {
		return "", false, true
	}
	return v, true, true
}
