package engine

import (
	"bufio"
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

// Snapshot layout, version 1, all integers varints:
//
//	magic "presenced-snapshot\n", version, sequence, written-at (Unix ns),
//	tenant count, then per tenant: name, per dimension the id names,
//	user count, then per user: id, known-field mask, flags, role,
//	availability, chat, maxSlots, currentSlots, lastSeen, the clock of each
//	known field, per dimension the id count and ids;
//	then the CRC-32C (Castagnoli) of everything before it, 4 bytes big endian.
//
// Counters, member lists and views are not stored: they are derived from
// the users when the snapshot is read, so they cannot disagree with them.
const (
	snapshotMagic   = "presenced-snapshot\n"
	snapshotVersion = 1
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// SnapshotInfo describes a snapshot: the last stream sequence whose events
// it holds, and when it was written.
type SnapshotInfo struct {
	Sequence uint64
	Written  time.Time
}

// WriteSnapshot writes the state of every user to w. It locks one shard at a
// time, so the snapshot is a consistent cut only while no Apply runs: the
// ingest loop, the only writer, calls it between two events, and passes the
// sequence of the last one applied in info.
func (e *Engine) WriteSnapshot(w io.Writer, info SnapshotInfo) error {
	crc := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<16)
	enc := encoder{w: bw}
	enc.bytes([]byte(snapshotMagic))
	enc.uint(snapshotVersion)
	enc.uint(info.Sequence)
	enc.int(info.Written.UnixNano())

	var tenants []*tenant
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.RLock()
		for _, t := range s.tenants {
			if len(t.users) > 0 { // a tenant only watched has no state to keep
				tenants = append(tenants, t)
			}
		}
		s.mu.RUnlock()
	}
	// In name order, so that equal states write equal bytes.
	slices.SortFunc(tenants, func(a, b *tenant) int { return strings.Compare(a.name, b.name) })
	enc.uint(uint64(len(tenants)))
	for _, t := range tenants {
		s := e.shard(t.name)
		s.mu.RLock()
		t.encode(&enc)
		s.mu.RUnlock()
	}
	if enc.err != nil {
		return fmt.Errorf("engine: writing snapshot: %w", enc.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("engine: writing snapshot: %w", err)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc.Sum32())
	if _, err := w.Write(sum[:]); err != nil {
		return fmt.Errorf("engine: writing snapshot: %w", err)
	}
	return nil
}

func (t *tenant) encode(enc *encoder) {
	enc.string(t.name)
	for d := range t.dims {
		enc.uint(uint64(len(t.dims[d].names)))
		for _, name := range t.dims[d].names {
			enc.string(name)
		}
	}
	enc.uint(uint64(len(t.users)))
	for i := range t.all() {
		u := t.ref(i)
		st := &u.state
		enc.string(u.id)
		enc.uint(uint64(st.Known))
		enc.uint(uint64(flag(st.Seen, 1) | flag(st.Connected, 2) | flag(st.Expired, 4)))
		enc.uint(uint64(st.Role))
		enc.uint(uint64(st.Availability))
		enc.uint(uint64(st.Chat))
		enc.uint(uint64(st.MaxSlots))
		enc.uint(uint64(st.CurrentSlots))
		enc.int(st.LastSeen)
		for f := range presence.NumFields {
			if st.Known&(1<<f) != 0 {
				enc.int(st.Clock[f])
			}
		}
		for d := range numDims {
			ids := u.dimIDs(d)
			enc.uint(uint64(len(ids)))
			for _, id := range ids {
				enc.uint(uint64(id))
			}
		}
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
// the format, changes nothing and returns an error matching ErrSnapshot.
func (e *Engine) ReadSnapshot(r io.Reader) (SnapshotInfo, error) {
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
	if v := dec.uint(); v != snapshotVersion && dec.err == nil {
		return info, fmt.Errorf("%w: version %d, want %d", ErrSnapshot, v, snapshotVersion)
	}
	info.Sequence = dec.uint()
	info.Written = time.Unix(0, dec.int()).UTC()
	tenants := make(map[string]*tenant)
	for range dec.count() {
		t := decodeTenant(&dec)
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

func decodeTenant(dec *decoder) *tenant {
	t := newTenant(dec.string())
	for d := range t.dims {
		for range dec.count() {
			name := dec.string()
			if _, dup := t.dims[d].index[name]; dup {
				dec.fail("id %q twice", name)
				return t
			}
			t.dims[d].intern(name, true)
		}
	}
	n := dec.count()
	// Each user takes at least 16 bytes: a count cannot ask for more room
	// than the snapshot could fill.
	t.users = make(map[string]uint32, min(n, len(dec.b)/16))
	var ids []uint32 // one user's, reused
	for range n {
		u := user{id: clone(&t.ids, dec.bytes())}
		st := &u.state
		st.Known = presence.Fields(dec.small(1<<presence.NumFields - 1))
		flags := dec.small(7)
		st.Seen, st.Connected, st.Expired = flags&1 != 0, flags&2 != 0, flags&4 != 0
		st.Role = presence.Role(dec.small(presence.NumRoles - 1))
		st.Availability = presence.Status(dec.small(presence.NumStatuses - 1))
		st.Chat = presence.Status(dec.small(presence.NumStatuses - 1))
		st.MaxSlots = uint16(dec.small(presence.MaxSlotsLen))
		st.CurrentSlots = uint16(dec.small(presence.MaxSlotsLen))
		st.LastSeen = dec.int()
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
		if st.Online() {
			t.count(i, t.ref(i), pointOf(st), 1, true)
		}
	}
	return t
}

type encoder struct {
	w   *bufio.Writer
	buf [binary.MaxVarintLen64]byte
	err error
}

func (e *encoder) bytes(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}
func (e *encoder) uint(v uint64) { e.bytes(binary.AppendUvarint(e.buf[:0], v)) }
func (e *encoder) int(v int64)   { e.bytes(binary.AppendVarint(e.buf[:0], v)) }
func (e *encoder) string(s string) {
	e.uint(uint64(len(s)))
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
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

// count reads a number of items, bounded by the bytes left (each item takes
// at least one byte), so that a bad count cannot make a huge loop.
func (d *decoder) count() int {
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
	n := d.count()
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}
