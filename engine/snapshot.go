package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/presenced/presenced/presence"
)

// Snapshot layout, version 2, all integers varints:
//
//	magic "presenced-snapshot\n", version, sequence, written-at (Unix ns),
//	stream name, stream created-at (Unix ns, 0: unknown), session TTL (ns),
//	max lateness (ns, Config.MaxLate),
//	tenant count, then per tenant: name, per dimension the id names,
//	user count, then per user: id, known-field mask, flags, role,
//	availability, chat, maxSlots, currentSlots, lastSeen, spanFrom, when
//	flags has gaps the span count and each span's from and to, the clock of
//	each known field, per dimension the id count and ids;
//	then the CRC-32C (Castagnoli) of everything before it, 4 bytes big endian.
//
// Version 1 is the same without the stream name, its creation time, the
// session TTL, the max lateness and the spans. It still loads (see
// SnapshotInfo.Version), each user's events taken as one span ending at
// lastSeen.
//
// Counters, member lists and views are not stored: they are derived from
// the users when the snapshot is read, so they cannot disagree with them.
const (
	snapshotMagic   = "presenced-snapshot\n"
	snapshotVersion = 2
	// snapshotV1 is the version without the stream's identity and the TTL.
	snapshotV1 = 1
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// SnapshotInfo describes a snapshot: which stream it was taken of, how far
// into it, and with which session TTL.
type SnapshotInfo struct {
	// Sequence is the last stream sequence whose events the snapshot holds.
	Sequence uint64
	// Written is when the snapshot was written.
	Written time.Time
	// Stream is the name of the stream Sequence counts in.
	Stream string
	// StreamCreated is that stream's creation time (JetStream's
	// StreamInfo.Created): a stream deleted and created again under the same
	// name starts its sequences again, and only this tells the two apart.
	// Zero means unknown.
	StreamCreated time.Time
	// SessionTTL is the session TTL of the engine that wrote the snapshot.
	// WriteSnapshot records the engine's own and ignores this field;
	// ReadSnapshot refuses a snapshot whose TTL is not the engine's, since
	// expiry has shaped the users it holds.
	SessionTTL time.Duration
	// MaxLate is the Config.MaxLate of the engine that wrote the snapshot,
	// recorded and checked like SessionTTL (with a TTL, it decides how long
	// the users' spans were kept).
	MaxLate time.Duration
	// Version is the format version ReadSnapshot read; WriteSnapshot always
	// writes the current one. A version 1 snapshot has no Stream,
	// StreamCreated or SessionTTL: its TTL cannot be checked, and it is up to
	// the caller to judge whether it belongs to the stream.
	Version int
}

// WriteSnapshot writes the state of every user to w: it takes a Cut and
// writes it. The snapshot is exactly the state when it was called as long
// as no Apply ran while it took the cut, a few microseconds per shard: the
// caller takes it between two events (see Cut).
func (e *Engine) WriteSnapshot(w io.Writer, info SnapshotInfo) error {
	return e.Cut().Write(w, info)
}

// cutChunk is how many users Cut.Write encodes per critical section: about
// 100 µs of a shard's read lock, so that an Apply waits that long at most.
const cutChunk = 1024

// Cut is the state of the engine at one moment, to be written as a snapshot
// while events go on being applied (contract section 1: a snapshot of
// sequence S is the stream up to S, exactly). Take it between two events,
// as the ingester's Checkpoint lets; it takes each shard's lock for as long
// as it takes to list the shard's tenants.
//
// From then until the cut is written, the first change Apply or Expire
// makes to a user the cut holds and Write has not encoded yet first copies
// the user as it was (its state, ids and spans): Write encodes that copy.
// So the snapshot is an exact cut, and the messages after S, read again
// after a restart, are applied to exactly the state they were applied to
// the first time, with the same results (presence_events_total). A
// snapshot of whatever each user holds when encoded would not give that:
// per-field last-writer-wins makes the state right again, but an event
// whose field a later one overwrote during the encoding would be counted
// stale the second time, and applied the first.
//
// A cut costs memory until written: Write, or Release to give it up.
type Cut struct {
	// Alone, set before Write, says that nothing applies events or
	// expires sessions while the cut is written, as for the last snapshot
	// once ingest has stopped: Write then does not rest between its chunks
	// (see rest), which made it 4x faster at 1M users
	// (BenchmarkSnapshotAtRest).
	Alone bool

	e       *Engine
	resets  uint64       // e.resets at the cut: a Reset since voids it
	tenants []*tenantCut // in name order, so that equal states write equal bytes
}

// tenantCut is the part of a cut in one tenant. Its fields are guarded by
// the tenant's shard lock, but names, which is read without it.
type tenantCut struct {
	s     *shard
	t     *tenant
	users uint32 // the tenant's users at the cut, the ones it holds
	// names holds the ids' names at the cut. A dimension's names are only
	// ever appended to, and a Reset gives the tenant new ones: the strings
	// below len(names[d]) never change, and are read without the lock.
	names [numDims][]string
	next  uint32              // the users below it are encoded
	saved map[uint32]*cutUser // the users changed since the cut, as they were
}

// cutUser is one user as it was at the cut.
type cutUser struct {
	state presence.State
	ids   []uint32 // the user's ids, the dimensions one after the other
	n     [numDims]uint16
	spans []presence.Span
}

// Cut takes the state of the engine as it is now, for Write. See Cut.
func (e *Engine) Cut() *Cut {
	c := &Cut{e: e, resets: e.resets.Load()}
	for i := range e.shards {
		s := &e.shards[i]
		// The write lock: a cut is added to its tenants' lists, which
		// Apply reads.
		s.mu.Lock()
		for _, t := range s.tenants {
			if len(t.users) == 0 { // a tenant only watched has no state to keep
				continue
			}
			tc := &tenantCut{s: s, t: t, users: uint32(len(t.users)), saved: make(map[uint32]*cutUser)}
			for d := range t.dims {
				tc.names[d] = t.dims[d].names
			}
			t.cuts = append(t.cuts, tc)
			c.tenants = append(c.tenants, tc)
		}
		s.mu.Unlock()
	}
	slices.SortFunc(c.tenants, func(a, b *tenantCut) int { return strings.Compare(a.t.name, b.t.name) })
	return c
}

// keep copies user i, whose state is st, into the cuts that hold it and have
// not encoded it yet, before Apply or Expire changes it. The caller holds
// the shard's write lock.
func (t *tenant) keep(i uint32, st *presence.State) {
	for _, tc := range t.cuts {
		if i < tc.next || i >= tc.users || tc.saved[i] != nil {
			continue
		}
		u := t.ref(i)
		cu := &cutUser{state: *st, ids: slices.Clone(u.ids[:u.idCount()]), n: u.n}
		if st.Gaps {
			cu.spans = slices.Clone(t.spans[i])
		}
		tc.saved[i] = cu
	}
}

// Write writes the cut to w as a snapshot described by info, and releases
// it. It holds a shard's read lock while it encodes cutChunk users, then
// rests as long (see rest) unless Alone, and holds no lock while it writes
// to w. A Reset of the engine since the cut fails it.
func (c *Cut) Write(w io.Writer, info SnapshotInfo) error {
	defer c.Release()
	crc := crc32.New(crcTable)
	out := io.MultiWriter(w, crc)
	enc := encoder{b: make([]byte, 0, 1<<17)}
	enc.bytes([]byte(snapshotMagic))
	enc.uint(snapshotVersion)
	enc.uint(info.Sequence)
	enc.int(info.Written.UnixNano())
	enc.string(info.Stream)
	enc.int(unixNano(info.StreamCreated))
	enc.int(c.e.ttl)
	enc.int(c.e.late)
	enc.uint(uint64(len(c.tenants)))
	for _, tc := range c.tenants {
		enc.string(tc.t.name)
		for d := range tc.names {
			enc.uint(uint64(len(tc.names[d])))
			for _, name := range tc.names[d] {
				enc.string(name)
			}
		}
		enc.uint(uint64(tc.users))
		for tc.next < tc.users {
			if err := enc.flush(out, 1<<16); err != nil {
				return fmt.Errorf("engine: writing snapshot: %w", err)
			}
			held := time.Now()
			if !tc.encode(&enc, c) {
				return fmt.Errorf("engine: writing snapshot: the engine was reset meanwhile")
			}
			if !c.Alone {
				rest(held)
			}
		}
	}
	if err := enc.flush(out, 0); err != nil {
		return fmt.Errorf("engine: writing snapshot: %w", err)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc.Sum32())
	if _, err := w.Write(sum[:]); err != nil {
		return fmt.Errorf("engine: writing snapshot: %w", err)
	}
	return nil
}

// encode encodes the next cutChunk users of tc under the shard's read lock,
// each as it was at the cut, and reports false when a Reset voided the cut.
func (tc *tenantCut) encode(enc *encoder, c *Cut) bool {
	tc.s.mu.RLock()
	defer tc.s.mu.RUnlock()
	// Reset counts before it empties any shard: a chunk encoded after it
	// emptied this one sees it.
	if c.e.resets.Load() != c.resets {
		return false
	}
	t := tc.t
	end := min(tc.next+cutChunk, tc.users)
	for i := tc.next; i < end; i++ {
		if cu := tc.saved[i]; cu != nil {
			enc.user(t.user(i).id, &cu.state, cu.n, cu.ids, cu.spans)
			// Read lock: Apply, the only other user of saved, waits.
			delete(tc.saved, i)
			continue
		}
		u := t.ref(i)
		enc.user(u.id, &u.state, u.n, u.ids[:u.idCount()], t.spans[i])
	}
	tc.next = end
	return true
}

// Release gives up the cut: Apply stops copying users for it. Write calls
// it; call it for a cut not written. It is safe to call more than once.
func (c *Cut) Release() {
	for _, tc := range c.tenants {
		tc.s.mu.Lock()
		if k := slices.Index(tc.t.cuts, tc); k >= 0 {
			tc.t.cuts = slices.Delete(tc.t.cuts, k, k+1)
		}
		tc.saved = nil
		tc.s.mu.Unlock()
	}
	c.tenants = nil
}

// user encodes one user: ids holds its ids of every dimension, n[d] of
// dimension d, and spans its spans when st has Gaps.
func (e *encoder) user(id string, st *presence.State, n [numDims]uint16, ids []uint32, spans []presence.Span) {
	e.string(id)
	e.uint(uint64(st.Known))
	e.uint(uint64(flag(st.Seen, 1) | flag(st.Connected, 2) | flag(st.Expired, 4) | flag(st.Gaps, 8)))
	e.uint(uint64(st.Role))
	e.uint(uint64(st.Availability))
	e.uint(uint64(st.Chat))
	e.uint(uint64(st.MaxSlots))
	e.uint(uint64(st.CurrentSlots))
	e.int(st.LastSeen)
	e.int(st.SpanFrom)
	if st.Gaps {
		e.uint(uint64(len(spans)))
		for _, sp := range spans {
			e.int(sp.From)
			e.int(sp.To)
		}
	}
	for f := range presence.NumFields {
		if st.Known&(1<<f) != 0 {
			e.int(st.Clock[f])
		}
	}
	for d := range numDims {
		e.uint(uint64(n[d]))
		for _, id := range ids[:n[d]] {
			e.uint(uint64(id))
		}
		ids = ids[n[d]:]
	}
}

func flag(b bool, bit uint8) uint8 {
	if b {
		return bit
	}
	return 0
}

// ReadSnapshot loads a snapshot written by WriteSnapshot into e, which must
// hold no tenant (no event applied, no watch open), and returns what the
// snapshot covers. The whole snapshot is read and its checksum verified
// before any of it is used; a snapshot that fails the check, or any rule of
// the format, or was written with another session TTL or max lateness,
// changes nothing and returns an error matching ErrSnapshot.
func (e *Engine) ReadSnapshot(r io.Reader) (SnapshotInfo, error) {
	return e.ReadSnapshotIf(r, nil)
}

// ReadSnapshotIf is ReadSnapshot with the caller's own check: accept, when
// not nil, is called with the snapshot's info once its checksum and header
// are verified and before anything is loaded. An error from accept leaves e
// unchanged and is returned wrapped in ErrSnapshot. It lets a caller refuse a
// snapshot of another stream without decoding the users first.
func (e *Engine) ReadSnapshotIf(r io.Reader, accept func(SnapshotInfo) error) (SnapshotInfo, error) {
	var info SnapshotInfo
	data, err := io.ReadAll(r)
	if err != nil {
		return info, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if len(data) < len(snapshotMagic)+4 || !bytes.HasPrefix(data, []byte(snapshotMagic)) {
		return info, fmt.Errorf("%w: not a presenced snapshot", ErrSnapshot)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return info, fmt.Errorf("%w: checksum mismatch", ErrSnapshot)
	}
	for i := range e.shards {
		if len(e.shards[i].tenants) != 0 {
			return info, fmt.Errorf("%w: the engine is not empty", ErrSnapshot)
		}
	}
	dec := decoder{b: body[len(snapshotMagic):]}
	info, err = decodeHeader(&dec)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if info.Version >= snapshotVersion && int64(info.SessionTTL) != e.ttl {
		return SnapshotInfo{}, fmt.Errorf("%w: written with session TTL %v, the engine's is %v",
			ErrSnapshot, info.SessionTTL, time.Duration(e.ttl))
	}
	if info.Version >= snapshotVersion && e.ttl > 0 && int64(info.MaxLate) != e.late {
		return SnapshotInfo{}, fmt.Errorf("%w: written with max lateness %v, the engine's is %v",
			ErrSnapshot, info.MaxLate, time.Duration(e.late))
	}
	if accept != nil {
		if err := accept(info); err != nil {
			return SnapshotInfo{}, fmt.Errorf("%w: %w", ErrSnapshot, err)
		}
	}
	tenants := make(map[string]*tenant)
	for range dec.items() {
		t := decodeTenant(&dec, info.Version)
		if dec.err == nil && tenants[t.name] != nil {
			dec.fail("tenant %q twice", t.name)
		}
		tenants[t.name] = t
	}
	if dec.err == nil && len(dec.b) != 0 {
		dec.fail("%d bytes after the last tenant", len(dec.b))
	}
	if dec.err != nil {
		return SnapshotInfo{}, fmt.Errorf("%w: %w", ErrSnapshot, dec.err)
	}
	for name, t := range tenants {
		if len(t.users) > 0 { // an older snapshot may hold watched tenants
			e.shard(name).tenants[name] = t
		}
	}
	return info, nil
}

// decodeHeader reads what comes before the tenants, in either version.
func decodeHeader(dec *decoder) (SnapshotInfo, error) {
	var info SnapshotInfo
	v := dec.uint()
	if dec.err == nil && v != snapshotV1 && v != snapshotVersion {
		return info, fmt.Errorf("version %d, want %d or %d", v, snapshotV1, snapshotVersion)
	}
	info.Version = int(v)
	info.Sequence = dec.uint()
	info.Written = time.Unix(0, dec.int()).UTC()
	if v >= snapshotVersion {
		info.Stream = dec.string()
		if created := dec.int(); created != 0 {
			info.StreamCreated = time.Unix(0, created).UTC()
		}
		ttl, late := dec.int(), dec.int()
		if (ttl < 0 || late < 0) && dec.err == nil {
			dec.fail("session TTL %d or max lateness %d is negative", ttl, late)
		}
		info.SessionTTL, info.MaxLate = time.Duration(ttl), time.Duration(late)
	}
	if dec.err != nil {
		return SnapshotInfo{}, dec.err
	}
	return info, nil
}

// unixNano is t in Unix nanoseconds, 0 for the zero time (whose UnixNano
// is not defined).
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func decodeTenant(dec *decoder, version int) *tenant {
	t := newTenant(dec.string())
	for d := range t.dims {
		for range dec.items() {
			name := dec.string()
			if _, dup := t.dims[d].index[name]; dup {
				dec.fail("id %q twice", name)
				return t
			}
			t.dims[d].intern(name, true)
		}
	}
	n := dec.items()
	// Each user takes at least 16 bytes: a count cannot ask for more room
	// than the snapshot could fill.
	t.users = make(map[string]uint32, min(n, len(dec.b)/16))
	var ids []uint32 // one user's, reused
	for range n {
		u := user{id: clone(&t.ids, dec.bytes())}
		st := &u.state
		st.Known = presence.Fields(dec.small(1<<presence.NumFields - 1))
		flags := dec.small(15)
		st.Seen, st.Connected, st.Expired, st.Gaps = flags&1 != 0, flags&2 != 0, flags&4 != 0, flags&8 != 0
		st.Role = presence.Role(dec.small(presence.NumRoles - 1))
		st.Availability = presence.Status(dec.small(presence.NumStatuses - 1))
		st.Chat = presence.Status(dec.small(presence.NumStatuses - 1))
		st.MaxSlots = uint16(dec.small(presence.MaxSlotsLen))
		st.CurrentSlots = uint16(dec.small(presence.MaxSlotsLen))
		st.LastSeen = dec.int()
		st.SpanFrom = st.LastSeen
		var spans []presence.Span
		if version >= snapshotVersion {
			st.SpanFrom = dec.int()
			if st.Gaps {
				spans = decodeSpans(dec)
			}
		} else if st.Gaps {
			dec.fail("gaps in a version %d snapshot", version)
		}
		for f := range presence.NumFields {
			if st.Known&(1<<f) != 0 {
				st.Clock[f] = dec.int()
			}
		}
		ids = ids[:0]
		for d := range numDims {
			n := dec.small(presence.MaxIDs)
			for range n {
				id := dec.uint()
				if id >= uint64(len(t.dims[d].names)) {
					dec.fail("id %d of %d", id, len(t.dims[d].names))
				}
				ids = append(ids, uint32(id))
			}
			u.n[d] = uint16(n)
		}
		if dec.err != nil {
			return t
		}
		// One map operation: the new user's index is the count before it.
		i := uint32(len(t.users))
		if t.users[u.id] = i; len(t.users) == int(i) {
			dec.fail("user %q twice", u.id)
			return t
		}
		u.list = t.lists.alloc(2 * len(ids))
		copy(t.lists.get(u.list, 2*len(ids)), ids)
		t.add(u)
		if spans != nil {
			if t.spans == nil {
				t.spans = make(map[uint32][]presence.Span)
			}
			t.spans[i] = spans
		}
		if st := &t.user(i).state; st.Online() {
			t.countUser(i, t.ref(i), pointOf(st), 1, true)
			t.order(i, u.id, clocksOf(st))
		}
	}
	return t
}

// decodeSpans reads the spans of a user with gaps: at least two, each in
// order and after the one before (see presence.Span).
func decodeSpans(dec *decoder) []presence.Span {
	n := dec.items()
	if n < 2 && dec.err == nil {
		dec.fail("%d spans with gaps", n)
		return nil
	}
	spans := make([]presence.Span, n)
	for k := range spans {
		spans[k] = presence.Span{From: dec.int(), To: dec.int()}
		if dec.err == nil && (spans[k].To < spans[k].From || k > 0 && spans[k].From <= spans[k-1].To) {
			dec.fail("span %d of %d out of order", k, n)
		}
	}
	return spans
}

// encoder appends a snapshot's bytes to b, which flush writes out.
type encoder struct {
	b []byte
}

// flush writes out what b holds once it is more than limit bytes.
func (e *encoder) flush(w io.Writer, limit int) error {
	if len(e.b) <= limit {
		return nil
	}
	_, err := w.Write(e.b)
	e.b = e.b[:0]
	return err
}

func (e *encoder) bytes(b []byte) { e.b = append(e.b, b...) }
func (e *encoder) uint(v uint64)  { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) string(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// decoder reads varints from a checked buffer; the first error sticks and
// every later read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
		d.b = nil
	}
}

func (d *decoder) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// small reads an unsigned value that must not exceed limit.
func (d *decoder) small(limit uint64) uint64 {
	v := d.uint()
	if v > limit {
		d.fail("value %d over %d", v, limit)
		return 0
	}
	return v
}

// items reads a number of items, bounded by the bytes left (each item takes
// at least one byte), so that a bad count cannot make a huge loop.
func (d *decoder) items() int {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail("count %d over the %d bytes left", n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) string() string { return string(d.bytes()) }

// bytes reads a string without copying it: the result aliases the snapshot.
func (d *decoder) bytes() []byte {
	n := d.items()
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}
