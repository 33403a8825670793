package engine

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"unsafe"
)

// CubeBytes is the size of one counter cube, for the benchmarks.
const CubeBytes = int(unsafe.Sizeof(cube{}))

// FixChecksum replaces the last 4 bytes of data with the checksum of the
// rest, so that the fuzzer reaches the parser.
func FixChecksum(data []byte) []byte {
	if len(data) < 4 {
		return data
	}
	out := bytes.Clone(data)
	binary.BigEndian.PutUint32(out[len(out)-4:], crc32.Checksum(out[:len(out)-4], crcTable))
	return out
}

// HeldTenants counts the tenants the shards hold, those only watched
// included, which Stats leaves out.
func HeldTenants(e *Engine) int {
	n := 0
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.RLock()
		n += len(s.tenants)
		s.mu.RUnlock()
	}
	return n
}

// HeldCuts counts the cuts the tenants copy users for.
func HeldCuts(e *Engine) int {
	n := 0
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.RLock()
		for _, t := range s.tenants {
			n += len(t.cuts)
		}
		s.mu.RUnlock()
	}
	return n
}

// AfterScanChunk has f called between two chunks of every long read (a
// view's first build, a breakdown), until the returned func is called.
func AfterScanChunk(f func()) (restore func()) {
	afterScanChunk = f
	return func() { afterScanChunk = nil }
}
