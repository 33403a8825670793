// Command presenced is the presence engine: it reads presence events from
// NATS JetStream and answers the connectedUsersIndicator GraphQL query.
//
//	presenced [flags]          run the service (see -help; every flag is also PRESENCE_<FLAG>)
//	presenced token TENANT     print a new token and its line for the -tokens file
package main
