package presence

// FNV-1a, 32 bits (hash/fnv's New32a), inline so that Partition does not
// allocate.
const (
	fnvOffset32 = 2166136261
	fnvPrime32  = 16777619
)

// Partition returns the partition, from 0 to n-1, of the events of tenant
// when they are split into n partitions: exactly what a NATS subject
// transform {{partition(n,1)}} computes for the subject token tenant
// (nats-server's getHashPartition: FNV-1a 32 of the token modulo n), so that
// a stream that partitions <prefix>.*.* by its tenant token and the code
// that asks where a tenant's events are agree. tenant need not be a valid
// tenant id: the server hashes whatever the token is. n below 2 is one
// partition. It does not allocate.
func Partition(tenant string, n int) int {
	if n < 2 {
		return 0
	}
	h := uint32(fnvOffset32)
	for i := 0; i < len(tenant); i++ {
		h ^= uint32(tenant[i])
		h *= fnvPrime32
	}
	return int(h % uint32(n))
}
