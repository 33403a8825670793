// Drives presenced's socket with the stock graphql-ws client, as a browser
// or Node app would: each operation is sent without the variables it
// declares defaults for (or with those of the case), and the first value
// it yields, or its errors, is printed as one JSON line for the Go test
// (TestGraphQLWSClient) to check.
//
//   node subscribe.mjs ws://127.0.0.1:PORT/graphql
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const url = process.argv[2];
if (!url) {
  console.error('usage: node subscribe.mjs ws://host:port/graphql');
  process.exit(2);
}

const count = '{ connectedUsersCount }';
const live = `subscription S($m: Int = 100, $f: ConnectedUsersIndicatorFilters = {roles: [BOT]}) {
  connectedUsersIndicatorUpdated(filters: $f, minIntervalMs: $m) ${count}
}`;
const query = `query Q($f: ConnectedUsersIndicatorFilters = {roles: [OPERATOR]}) {
  connectedUsersIndicatorUpdated: connectedUsersIndicator(filters: $f) ${count}
}`;

// The order matters: the Go test reads the subscriptions' intervals in it.
const cases = [
  { name: 'defaults not sent', payload: { query: live } },
  { name: 'defaults, explicit nulls', payload: { query: live, variables: { m: null, f: null } } },
  {
    name: 'no defaults, not sent',
    payload: {
      query: `subscription($m: Int, $f: ConnectedUsersIndicatorFilters) {
  connectedUsersIndicatorUpdated(filters: $f, minIntervalMs: $m) ${count}
}`,
    },
  },
  { name: 'operationName chooses the subscription', payload: { query: `${query}\n${live}`, operationName: 'S' } },
  { name: 'operationName chooses the query', payload: { query: `${query}\n${live}`, operationName: 'Q' } },
  {
    name: 'negative default',
    payload: {
      query: `subscription($m: Int = -5) { connectedUsersIndicatorUpdated(minIntervalMs: $m) ${count} }`,
    },
  },
];

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { 'X-Tenant-Id': 'acme' },
  retryAttempts: 0,
});

let failed = false;
try {
  for (const c of cases) {
    const it = client.iterate(c.payload);
    try {
      const { value, done } = await it.next();
      console.log(JSON.stringify({ name: c.name, result: done ? null : value }));
    } catch (err) {
      // graphql-ws rejects with the error message's GraphQL errors.
      console.log(JSON.stringify({ name: c.name, errors: Array.isArray(err) ? err : [{ message: String(err) }] }));
    } finally {
      await it.return?.();
    }
  }
} catch (err) {
  console.error(err);
  failed = true;
} finally {
  await client.dispose();
}
process.exit(failed ? 1 : 0);
