package ingest

import "errors"

// Errors returned by this package, matched with errors.Is. Each is wrapped
// with the detail: the field, the stream or the server error at fault.
var (
	// ErrConfig reports a Config or ServerConfig field that breaks its rule.
	ErrConfig = errors.New("ingest: invalid config")
	// ErrServer reports that the embedded NATS server could not start.
	ErrServer = errors.New("ingest: embedded NATS server")
	// ErrStreamSubjects reports an existing stream whose subjects do not
	// capture what the ingester needs; it is left as the operator made it.
	ErrStreamSubjects = errors.New("ingest: stream subjects")
	// ErrPartitions reports an existing event stream whose partition count
	// is not Config.Partitions, or that does not partition its subjects as
	// its count says: the program is to refuse to start.
	ErrPartitions = errors.New("ingest: stream partitions")
	// ErrRunning reports a second Run while one is in progress.
	ErrRunning = errors.New("ingest: already running")
	// ErrConnClosed reports that the NATS connection was closed under Run.
	ErrConnClosed = errors.New("ingest: NATS connection closed")
)
