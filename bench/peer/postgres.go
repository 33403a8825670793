package peer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// Postgres keeps one row per user in presence_user: scalar columns, the id
// lists as text[] columns with a GIN index each, and the ts of each field for
// the per-field last-writer-wins rule. Events are loaded in chunks: COPY into
// a temporary staging table, then one INSERT ... ON CONFLICT DO UPDATE that
// takes, per user and field, the newest value of the chunk and keeps it only
// if it is not older than the row's. The indicator is one aggregate query
// whose WHERE clause has a condition per filter field present (&& on the
// arrays, = ANY on the scalars), prepared once per filter shape (pgx caches
// the prepared statements), so that the planner sees the shape and can use
// the GIN and primary-key indexes.
type Postgres struct {
	conn *pgx.Conn
}

var _ Peer = (*Postgres)(nil)

// minTS is the ts of a field never set: any event is newer.
const minTS = "-9223372036854775808"

// pgField is a field of a user and the event columns that set it.
type pgField struct {
	col, tsCol string
	sqlType    string
	when       string // SQL condition on a staged event carrying the field
	value      string // SQL expression of the value in a staged event
	def        string // value of a user never seen
	list       bool   // an id list: fetched by the winning event's seq
}

var pgFields = []pgField{
	{"connected", "connected_ts", "boolean", "typ IN (1, 2)", "typ = 1", "false", false},
	{"role", "role_ts", "smallint", "fl & 2 <> 0", "role", "0", false},
	{"group_ids", "group_ts", "text[]", "fl & 4 <> 0", "", "'{}'", true},
	{"project_ids", "project_ts", "text[]", "fl & 8 <> 0", "", "'{}'", true},
	{"routing_group_ids", "routing_ts", "text[]", "fl & 16 <> 0", "", "'{}'", true},
	{"availability", "availability_ts", "smallint", "fl & 32 <> 0", "availability", "0", false},
	{"chat", "chat_ts", "smallint", "fl & 64 <> 0", "chat", "0", false},
	{"max_slots", "max_slots_ts", "smallint", "fl & 128 <> 0", "max_slots", "0", false},
	{"current_slots", "current_slots_ts", "smallint", "fl & 256 <> 0", "current_slots", "0", false},
}

func schemaSQL() []string {
	var cols []string
	for _, f := range pgFields {
		cols = append(cols, fmt.Sprintf("%s %s NOT NULL DEFAULT %s", f.col, f.sqlType, f.def),
			fmt.Sprintf("%s bigint NOT NULL DEFAULT %s", f.tsCol, minTS))
	}
	return []string{
		`CREATE TABLE IF NOT EXISTS presence_user (
  tenant text NOT NULL,
  user_id text NOT NULL,
  ` + strings.Join(cols, ",\n  ") + `,
  PRIMARY KEY (tenant, user_id))`,
		`CREATE INDEX IF NOT EXISTS presence_user_groups ON presence_user USING gin (group_ids)`,
		`CREATE INDEX IF NOT EXISTS presence_user_projects ON presence_user USING gin (project_ids)`,
		`CREATE INDEX IF NOT EXISTS presence_user_routing ON presence_user USING gin (routing_group_ids)`,
	}
}

const stageSQL = `CREATE TEMP TABLE IF NOT EXISTS stage (
  seq bigint PRIMARY KEY, user_id text NOT NULL, ts bigint NOT NULL, typ smallint NOT NULL, fl int NOT NULL,
  role smallint, group_ids text[], project_ids text[], routing_group_ids text[],
  availability smallint, chat smallint, max_slots smallint, current_slots smallint)`

var stageCols = []string{"seq", "user_id", "ts", "typ", "fl", "role", "group_ids", "project_ids", "routing_group_ids",
	"availability", "chat", "max_slots", "current_slots"}

// stageFields are the staged columns after fl, in stageCols order: each
// event field and its value.
var stageFields = []struct {
	has   presence.Fields
	value func(*presence.Event) any
}{
	{presence.HasRole, func(ev *presence.Event) any { return int16(ev.Role) }},
	{presence.HasGroups, func(ev *presence.Event) any { return nonNil(ev.GroupIDs) }},
	{presence.HasProjects, func(ev *presence.Event) any { return nonNil(ev.ProjectIDs) }},
	{presence.HasRoutingGroups, func(ev *presence.Event) any { return nonNil(ev.RoutingGroupIDs) }},
	{presence.HasAvailability, func(ev *presence.Event) any { return int16(ev.Availability) }},
	{presence.HasChat, func(ev *presence.Event) any { return int16(ev.Chat) }},
	{presence.HasMaxSlots, func(ev *presence.Event) any { return int16(ev.MaxSlots) }},
	{presence.HasCurrentSlots, func(ev *presence.Event) any { return int16(ev.CurrentSlots) }},
}

// mergeSQL takes each user's newest value per field in the staged chunk and
// merges it into presence_user, field by field, when not older. Ties go to
// the later event, as in the engine.
func mergeSQL() string {
	var agg, joins, insCols, sel, upd []string
	for k, f := range pgFields {
		order := "ORDER BY ts DESC, seq DESC) FILTER (WHERE " + f.when + "))[1]"
		if f.list {
			agg = append(agg, fmt.Sprintf("(array_agg(seq %s AS s%d", order, k))
			joins = append(joins, fmt.Sprintf("LEFT JOIN stage j%d ON j%d.seq = w.s%d", k, k, k))
			sel = append(sel, fmt.Sprintf("coalesce(j%d.%s, %s)", k, f.col, f.def))
		} else {
			agg = append(agg, fmt.Sprintf("(array_agg(%s %s AS v%d", f.value, order, k))
			sel = append(sel, fmt.Sprintf("coalesce(w.v%d, %s)", k, f.def))
		}
		agg = append(agg, fmt.Sprintf("max(ts) FILTER (WHERE %s) AS t%d", f.when, k))
		sel = append(sel, fmt.Sprintf("coalesce(w.t%d, %s)", k, minTS))
		insCols = append(insCols, f.col, f.tsCol)
		upd = append(upd,
			fmt.Sprintf("%s = CASE WHEN EXCLUDED.%s >= u.%s THEN EXCLUDED.%s ELSE u.%s END", f.col, f.tsCol, f.tsCol, f.col, f.col),
			fmt.Sprintf("%s = greatest(u.%s, EXCLUDED.%s)", f.tsCol, f.tsCol, f.tsCol))
	}
	return `WITH w AS (SELECT user_id, ` + strings.Join(agg, ", ") + ` FROM stage GROUP BY user_id)
INSERT INTO presence_user AS u (tenant, user_id, ` + strings.Join(insCols, ", ") + `)
SELECT $1, w.user_id, ` + strings.Join(sel, ", ") + `
FROM w ` + strings.Join(joins, " ") + `
ON CONFLICT (tenant, user_id) DO UPDATE SET ` + strings.Join(upd, ", ")
}

// NewPostgres connects to the server (dsn as pgx takes it) and creates the
// table and its indexes.
func NewPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	var conn *pgx.Conn
	var err error
	// A server just started refuses connections while it starts up.
	for deadline := time.Now().Add(time.Minute); ; {
		conn, err = pgx.Connect(ctx, dsn)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "57P03" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	for _, q := range append(schemaSQL(), stageSQL) {
		if _, err := conn.Exec(ctx, q); err != nil {
			conn.Close(ctx)
			return nil, fmt.Errorf("postgres: %s: %w", firstLine(q), err)
		}
	}
	return &Postgres{conn: conn}, nil
}

// DSN is the connection string of a server started by StartPostgres.
func DSN(s *Server) string {
	host, port, _ := strings.Cut(s.Addr, ":")
	return "host=" + host + " port=" + port + " user=postgres dbname=postgres sslmode=disable"
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func (p *Postgres) Name() string { return "PostgreSQL" }

// loadChunk is the number of events staged and merged at a time.
const loadChunk = 50_000

func (p *Postgres) Load(ctx context.Context, tenant string, evs []presence.Event) error {
	merge := mergeSQL()
	for i := 0; i < len(evs); i += loadChunk {
		chunk := evs[i:min(i+loadChunk, len(evs))]
		err := pgx.BeginFunc(ctx, p.conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "TRUNCATE stage"); err != nil {
				return err
			}
			k := 0
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"stage"}, stageCols, pgx.CopyFromFunc(func() ([]any, error) {
				if k == len(chunk) {
					return nil, nil
				}
				ev := &chunk[k]
				k++
				row := []any{int64(i + k), ev.UserID, ev.TS, int16(ev.Type), int32(ev.Fields)}
				for _, f := range stageFields {
					var v any // NULL unless the event carries the field
					if ev.Has(f.has) {
						v = f.value(ev)
					}
					row = append(row, v)
				}
				return row, nil
			}))
			if err != nil {
				return fmt.Errorf("COPY: %w", err)
			}
			if _, err := tx.Exec(ctx, "ANALYZE stage"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, merge, tenant); err != nil {
				return fmt.Errorf("merge: %w", err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("postgres: loading events: %w", err)
		}
	}
	// Fresh statistics and visibility map, as after any bulk load.
	if _, err := p.conn.Exec(ctx, "VACUUM ANALYZE presence_user"); err != nil {
		return fmt.Errorf("postgres: VACUUM ANALYZE: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const indicatorSelect = `SELECT count(*),
  count(*) FILTER (WHERE chat = 0), count(*) FILTER (WHERE chat = 1), count(*) FILTER (WHERE chat = 2),
  count(*) FILTER (WHERE chat IN (1, 2)),
  coalesce(sum(max_slots) FILTER (WHERE chat IN (1, 2)), 0),
  coalesce(sum(current_slots) FILTER (WHERE chat IN (1, 2)), 0)
FROM presence_user WHERE tenant = $1 AND connected`

func (p *Postgres) Query(ctx context.Context, tenant string, f *engine.Filter) (engine.Indicator, error) {
	var sb strings.Builder
	sb.WriteString(indicatorSelect)
	args := []any{tenant}
	cond := func(format string, v any) {
		args = append(args, v)
		fmt.Fprintf(&sb, " AND "+format, "$"+strconv.Itoa(len(args)))
	}
	smallints := func(col string, vals []int16) {
		if vals != nil {
			cond(col+" = ANY(%s::smallint[])", vals)
		}
	}
	smallints("availability", statuses(f.AvailabilityStatus))
	smallints("chat", statuses(f.ChatAvailability))
	if f.Roles != nil {
		roles := []int16{}
		for _, r := range f.Roles {
			if r != presence.NoRole {
				roles = append(roles, int16(r))
			}
		}
		smallints("role", roles)
	}
	for _, l := range []struct {
		col string
		ids []string
	}{{"group_ids", f.GroupIDs}, {"project_ids", f.ProjectIDs}, {"routing_group_ids", f.RoutingGroupIDs}} {
		if l.ids != nil {
			cond(l.col+" && %s::text[]", l.ids)
		}
	}
	if f.UserIDs != nil {
		cond("user_id = ANY(%s::text[])", f.UserIDs)
	}
	var ind engine.Indicator
	var off, avail, busy int64
	err := p.conn.QueryRow(ctx, sb.String(), args...).Scan(&ind.Connected, &off, &avail, &busy,
		&ind.InProduction, &ind.MaxSlots, &ind.CurrentSlots)
	if err != nil {
		return ind, fmt.Errorf("postgres: indicator: %w", err)
	}
	ind.Chat[presence.ToggleOff], ind.Chat[presence.Available], ind.Chat[presence.Busy] = off, avail, busy
	return ind, nil
}

func statuses(s []presence.Status) []int16 {
	if s == nil {
		return nil
	}
	out := []int16{}
	for _, x := range s {
		out = append(out, int16(x))
	}
	return out
}

func (p *Postgres) Reset(ctx context.Context) error {
	_, err := p.conn.Exec(ctx, "TRUNCATE presence_user")
	return err
}

func (p *Postgres) Close() error { return p.conn.Close(context.Background()) }
