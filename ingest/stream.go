package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// MetadataPartitions is the key of the event stream's metadata that records
// its partition count, set when the ingester creates the stream. A stream
// without it has one partition: it was created before partitions, or by an
// operator who did not partition it.
const MetadataPartitions = "presenced.partitions"

// StreamInfo is what Prepare found of the event stream.
type StreamInfo struct {
	// Partitions is the stream's partition count (see MetadataPartitions),
	// which Prepare checked is Config.Partitions.
	Partitions int
	// Created is the stream's creation time, which tells it from a stream
	// of the same name before or after it (see Config.StreamCreated).
	Created time.Time
	// FirstSeq and LastSeq are the sequences of its first and last
	// messages (FirstSeq is LastSeq+1 when it is empty).
	FirstSeq, LastSeq uint64
}

// Prepare creates the event stream, the dead-letter stream and the bucket of
// the dead-letter marks of cfg when they are missing, checks that those
// that exist fit cfg, and returns what it found of the event stream. Conn
// and Applier may be left out of cfg: js is the connection; cfg.Logger gets
// a line for what is created. An Ingester's Run does the same before it
// reads; Prepare lets a caller know the stream before it starts any
// Ingester. It retries what time may mend (a request unanswered while the
// cluster elects a leader, instances creating the same stream at once)
// until ctx ends, and then returns the last error. A stream that does not
// fit (ErrStreamSubjects, or ErrPartitions for a stream of another
// partition count) is returned at once: no retry mends it.
func Prepare(ctx context.Context, js jetstream.JetStream, cfg Config) (StreamInfo, error) {
	if err := cfg.fill(); err != nil {
		return StreamInfo{}, err
	}
	l := newLayout(cfg, js)
	var res resources
	err := Retry(ctx, l.log, "ingest: preparing the streams", func(actx context.Context) (err error) {
		res, err = l.ensure(actx)
		return err
	})
	if err != nil {
		return StreamInfo{}, err
	}
	info := res.events.CachedInfo()
	return StreamInfo{Partitions: cfg.Partitions, Created: info.Created, FirstSeq: info.State.FirstSeq,
		LastSeq: info.State.LastSeq}, nil
}

// layout is what a Config makes of NATS: the streams and the bucket that the
// ingester reads and writes, their names, and how they are created and
// checked.
type layout struct {
	cfg         Config // filled in
	js          jetstream.JetStream
	log         *slog.Logger
	subjects    string // what the event stream must capture
	transform   string // with Partitions > 1, where its subject transform puts subjects
	dlStream    string
	dlSubjects  string // what the dead-letter stream must capture
	marksBucket string
}

func newLayout(cfg Config, js jetstream.JetStream) layout {
	return layout{
		cfg:         cfg,
		js:          js,
		log:         cfg.Logger.With("stream", cfg.Stream),
		subjects:    cfg.Prefix + ".*.*",
		transform:   fmt.Sprintf("%s.{{partition(%d,1)}}.{{wildcard(1)}}.{{wildcard(2)}}", cfg.Prefix, cfg.Partitions),
		dlStream:    cfg.Stream + DeadLetterSuffix,
		dlSubjects:  "deadletter." + cfg.Prefix + ".>",
		marksBucket: cfg.Stream + MarksSuffix,
	}
}

// resources are the streams and the bucket of a layout, as found.
type resources struct {
	events, dl jetstream.Stream
	marks      jetstream.KeyValue
}

// ensure creates what is missing of the layout and checks what exists.
func (l *layout) ensure(ctx context.Context) (resources, error) {
	var res resources
	var err error
	events := jetstream.StreamConfig{
		Name:     l.cfg.Stream,
		Subjects: []string{l.subjects},
		Metadata: map[string]string{MetadataPartitions: strconv.Itoa(l.cfg.Partitions)},
	}
	if l.cfg.Partitions > 1 {
		// The stored subject carries the partition as the token after the
		// prefix, so that a reader takes its partition's messages with a
		// subject filter.
		events.SubjectTransform = &jetstream.SubjectTransformConfig{Source: l.subjects, Destination: l.transform}
	}
	if res.events, err = l.ensureStream(ctx, events); err != nil {
		return resources{}, err
	}
	if err := l.checkPartitions(&res.events.CachedInfo().Config); err != nil {
		return resources{}, err
	}
	res.dl, err = l.ensureStream(ctx, jetstream.StreamConfig{Name: l.dlStream, Subjects: []string{l.dlSubjects},
		Duplicates: deadLetterWindow})
	if err != nil {
		return resources{}, err
	}
	if res.marks, err = l.ensureBucket(ctx); err != nil {
		return resources{}, err
	}
	return res, nil
}

// checkPartitions checks that the event stream, configured as c, has the
// partition count of Config and partitions its subjects as the ingester
// reads them.
func (l *layout) checkPartitions(c *jetstream.StreamConfig) error {
	want := l.cfg.Partitions
	n, recorded := 1, c.Metadata[MetadataPartitions]
	if recorded != "" {
		var err error
		if n, err = strconv.Atoi(recorded); err != nil || n < 1 {
			return fmt.Errorf("%w: stream %s has the metadata %s=%q, which is no partition count",
				ErrPartitions, c.Name, MetadataPartitions, recorded)
		}
	}
	if n != want {
		source := "its metadata " + MetadataPartitions
		if recorded == "" {
			source = "no metadata " + MetadataPartitions + ": created before partitions"
		}
		return fmt.Errorf("%w: stream %s has %s (%s), Partitions is %d: set Partitions to %d to read it, "+
			"or Stream to a new stream for %d (a stream's partition count is fixed when it is created: "+
			"its stored subjects carry the partition)", ErrPartitions, c.Name, partitionsString(n), source, want, n, want)
	}
	if n == 1 {
		return nil
	}
	t := c.SubjectTransform
	if t == nil || t.Source != l.subjects || strings.ReplaceAll(t.Destination, " ", "") != l.transform {
		return fmt.Errorf("%w: stream %s records %d partitions, but its subject transform is %s, not %s -> %s",
			ErrPartitions, c.Name, n, transformString(t), l.subjects, l.transform)
	}
	// A subject of the stored form captured as it is would let a publisher
	// put a tenant's event in any partition.
	stored := l.cfg.Prefix + ".*.*.*"
	for _, sub := range c.Subjects {
		if server.SubjectsCollide(sub, stored) {
			return fmt.Errorf("%w: stream %s captures %s, which holds subjects of the partitioned form %s as published",
				ErrPartitions, c.Name, sub, stored)
		}
	}
	return nil
}

func partitionsString(n int) string {
	if n == 1 {
		return "1 partition"
	}
	return strconv.Itoa(n) + " partitions"
}

func transformString(t *jetstream.SubjectTransformConfig) string {
	if t == nil {
		return "none"
	}
	return t.Source + " -> " + t.Destination
}

// ensureStream returns the stream cfg names, creating it from cfg when
// missing, in files, with the retention and replicas of Config. An existing
// stream is left as its operator configured it, but it must capture the
// (only) subject of cfg.
func (l *layout) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	name, need := cfg.Name, cfg.Subjects[0]
	stream, err := l.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg.Storage = jetstream.FileStorage
		cfg.MaxAge = l.cfg.MaxAge
		cfg.Replicas = l.cfg.Replicas
		if cfg.MaxAge > 0 {
			// JetStream wants the duplicate window within the retention.
			cfg.Duplicates = min(cfg.Duplicates, cfg.MaxAge)
		}
		stream, err = l.js.CreateStream(ctx, cfg)
		if err == nil {
			l.log.Info("ingest: created stream", "name", name, "subjects", need, "max_age", l.cfg.MaxAge,
				"replicas", cfg.Replicas)
			return stream, nil
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another engine created it meanwhile.
			stream, err = l.js.Stream(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ingest: stream %s: %w", name, err)
	}
	subjects := stream.CachedInfo().Config.Subjects
	for _, s := range subjects {
		if covers(s, need) {
			return stream, nil
		}
	}
	return nil, fmt.Errorf("%w: stream %s captures %q, which does not include %s", ErrStreamSubjects, name, subjects, need)
}

// ensureBucket returns the marks bucket, creating it when missing. An
// existing bucket is left as it is.
func (l *layout) ensureBucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := l.js.KeyValue(ctx, l.marksBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = l.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      l.marksBucket,
			Description: "presenced: how far each partition's dead letters of stream " + l.cfg.Stream + " are written",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    l.cfg.Replicas,
		})
		if err == nil {
			l.log.Info("ingest: created bucket", "name", l.marksBucket, "replicas", l.cfg.Replicas)
			return kv, nil
		}
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Another engine created it meanwhile.
			kv, err = l.js.KeyValue(ctx, l.marksBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ingest: bucket %s: %w", l.marksBucket, err)
	}
	return kv, nil
}

// covers reports whether pattern matches every subject sub matches; both may
// hold wildcards.
func covers(pattern, sub string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(sub, ".")
	for k, tok := range p {
		if tok == ">" {
			return k < len(s)
		}
		if k >= len(s) {
			return false
		}
		if tok == "*" {
			if s[k] == ">" {
				return false
			}
		} else if tok != s[k] {
			return false
		}
	}
	return len(p) == len(s)
}

// maxStreamName keeps the name of the marks bucket's stream, KV_ + Stream +
// MarksSuffix, the longest of those derived from Stream, within JetStream's
// limit of 255 characters.
const maxStreamName = 255 - len("KV_") - len(MarksSuffix)

// validStreamName reports whether name and the names derived from it are
// valid for JetStream: the marks bucket's, the strictest, takes A-Z a-z 0-9
// _ - only.
func validStreamName(name string) bool {
	if name == "" || len(name) > maxStreamName {
		return false
	}
	for k := 0; k < len(name); k++ {
		switch c := name[k]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
