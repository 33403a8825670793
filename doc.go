// Package presenced is the root of the presence engine module. It holds only
// what belongs to the whole project: the GraphQL schema, embedded as Schema
// for the api package and for tools that generate clients.
//
// The program is cmd/presenced; the packages are presence (the domain and
// wire format), engine (the in-memory store) and api (GraphQL, HTTP and
// Prometheus).
//
//	fmt.Print(presenced.Schema) // the SDL served at /graphql
package presenced
