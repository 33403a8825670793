package engine

// Watch follows the indicator of one filter of one tenant as events change
// it. Watches of equal filters share one view, kept up to date by Apply and
// Expire like any view, so a thousand watchers cost one view and no polling:
// each waits on a channel that the engine closes when the value changes.
//
//	w := e.Watch("acme", f)
//	defer w.Close()
//	for {
//		value, changed := w.Next()
//		send(value)
//		<-changed // or a context, a timer...
//	}
type Watch struct {
	s      *shard
	t      *tenant
	v      *view // nil for a filter that matches nothing: its value never changes
	closed bool
}

// Watch starts following the indicator of f for tenant. Neither the tenant
// nor the ids of f need have been named by an event yet: the watch sees the
// users they bring once they are. Until then they cost only the watch:
// the tenant is not in Stats nor in snapshots, and it and the names go when
// the watch is closed (contract section 3.1). Close the watch when done:
// until then its view is never evicted. A filter with no view yet has its
// view built as Query builds one, a chunk of candidates at a time while
// Apply goes on.
func (e *Engine) Watch(tenant string, f *Filter) *Watch {
	m := f.masks()
	if f.matchesNothing(m) {
		return &Watch{}
	}
	s := e.shard(tenant)
	s.mu.Lock()
	t := s.tenant(tenant)
	var pending [numDims][]string
	c := t.resolve(f, m, nil, &pending)
	key := appendKey(nil, &c, &pending)
	if v := t.views.get(key); v != nil {
		w := t.watch(s, v)
		s.mu.Unlock()
		return w
	}
	v := &view{key: string(key), filter: c, pending: pending}
	var w *Watch
	keep := func() {
		// While the lock was released, another ask may have built the
		// view, or an event named one of the pending ids: then the scan,
		// which did not look for its users, is dropped for a build in
		// this critical section (rare: a name is new once).
		var now [numDims][]string
		nc := t.resolve(f, m, nil, &now)
		nkey := appendKey(nil, &nc, &now)
		switch built := t.views.get(nkey); {
		case built != nil:
			v = built
		case string(nkey) != v.key:
			v = t.newView(string(nkey), nc, now, e.maxViews)
		default:
			v.notified = v.value
			t.views.add(v, e.maxViews)
		}
		w = t.watch(s, v)
	}
	if !t.buildView(s, v, keep) {
		return e.Watch(tenant, f) // a Reset voided the build: watch the new state
	}
	return w
}

// watch adds a watcher to v, a view of t. The caller holds s's write lock.
func (t *tenant) watch(s *shard, v *view) *Watch {
	if v.watchers == 0 {
		// Unwatched, the view was kept up to date but no one was told:
		// what the first watcher reads is what it has been told.
		v.notified = v.value
	}
	v.watchers++
	t.watches++
	if v.changed == nil {
		v.changed = make(chan struct{})
	}
	return &Watch{s: s, t: t, v: v}
}

// Next returns the current value and a channel that is closed when the value
// next changes. The channel of a closed watch, or of a filter that matches
// nothing, is nil: it never fires.
func (w *Watch) Next() (Indicator, <-chan struct{}) {
	if w.v == nil {
		return Indicator{}, nil
	}
	w.s.mu.RLock()
	defer w.s.mu.RUnlock()
	if w.closed {
		return w.v.value, nil
	}
	return w.v.value, w.v.changed
}

// Close ends the watch. It is safe to call more than once. The last watch of
// a view that names ids no event named goes with it, and so does a tenant
// that has no user.
func (w *Watch) Close() {
	if w.v == nil {
		return
	}
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	w.v.watchers--
	w.t.watches--
	if w.v.watchers == 0 && w.v.transient() {
		w.t.views.drop(w.v)
	}
	// A tenant with watches stays in its shard (Reset keeps it): this one
	// is still there.
	if w.t.watches == 0 && len(w.t.users) == 0 {
		delete(w.s.tenants, w.t.name)
	}
}
