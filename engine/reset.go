package engine

// Reset empties the engine: every tenant and user is dropped, as before the
// first Apply. The ingester calls it when the stream it reads was recreated,
// before it applies the new stream from its first message.
//
// This is the smallest Reset that lets the ingest side rebuild the engine:
// it replaces each shard's tenants under the shard's lock, so a Query sees a
// shard either as it was or empty. Watches opened before it keep their old
// views and are not told. It is to be replaced by the full Reset, which
// keeps open watches going.
func (e *Engine) Reset() {
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		s.tenants = make(map[string]*tenant)
		s.mu.Unlock()
	}
}
