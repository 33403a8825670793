package api

import (
	"context"
	"errors"
	"math"
	"runtime/debug"
	"sync"
	"time"

	graphql "github.com/graph-gophers/graphql-go"
	"github.com/graph-gophers/graphql-go/introspection"
	"github.com/graph-gophers/graphql-go/log"
	"github.com/graph-gophers/graphql-go/trace/noop"
	"github.com/graph-gophers/graphql-go/trace/tracer"

	"github.com/presenced/presenced"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// Limits of a GraphQL request.
const (
	// MaxBodyBytes bounds the body of POST /graphql; a larger one gets 413.
	MaxBodyBytes = 1 << 20
	// MaxListLen bounds every list of the filters (userIds and the others).
	MaxListLen = 10000
	// MaxQueryLength bounds the query text, in bytes. It leaves room for
	// MaxListLen ids written in the query itself; longer lists go in
	// variables.
	MaxQueryLength = 512 << 10
	// MaxDepth bounds the nesting of fields. The schema itself is 3 deep;
	// the introspection query of GraphiQL needs 15.
	MaxDepth = 20
	// MaxSelections bounds the fields of a query once fragments are
	// expanded: each connectedUsersIndicator (aliases included) is an engine
	// query, and GraphiQL's introspection query needs a few hundred.
	MaxSelections = 2000
	// maxOverlapPairs bounds the field pairs compared by the "fields can be
	// merged" validation, quadratic in the fields of one response name:
	// without it, a 1 MiB query repeating one field costs billions of pairs.
	maxOverlapPairs = 10000
	// subscribeResolveTimeout bounds graphql-go's resolution of one value
	// of a subscription.
	subscribeResolveTimeout = 30 * time.Second
)

// newSchema parses the embedded schema with its resolvers and limits.
func newSchema(s *Server) (*graphql.Schema, error) {
	logger := s.cfg.Logger
	logPanic := func(ctx context.Context, v any) {
		logger.ErrorContext(ctx, "api: panic in a GraphQL resolver", "panic", v, "stack", string(debug.Stack()))
	}
	root := &rootResolver{
		query:        &queryResolver{engine: s.cfg.Engine},
		subscription: &subscriptionResolver{watch: s.watch, metrics: s.live},
	}
	return graphql.ParseSchema(presenced.Schema, root,
		graphql.UseStringDescriptions(),
		// Read the plain result structs' fields instead of calling methods.
		graphql.UseFieldResolvers(),
		// No resolver asks which subfields are selected: do not record them.
		graphql.DisableFieldSelections(),
		graphql.MaxDepth(MaxDepth),
		graphql.MaxQueryLength(MaxQueryLength),
		graphql.MaxSelections(MaxSelections),
		graphql.OverlapValidationLimit(maxOverlapPairs),
		// Turning one pushed value into a response takes microseconds; the
		// default of 1 s fails it on a machine that is only busy, and the
		// value would be lost (see stream).
		graphql.SubscribeResolverTimeout(subscribeResolveTimeout),
		graphql.Tracer(opTracer{}),
		graphql.Logger(log.LoggerFunc(logPanic)),
	)
}

// rootResolver hands graphql-go the resolver of each root type.
type rootResolver struct {
	query        *queryResolver
	subscription *subscriptionResolver
}

func (r *rootResolver) Query() *queryResolver               { return r.query }
func (r *rootResolver) Subscription() *subscriptionResolver { return r.subscription }

// queryResolver resolves type Query.
type queryResolver struct {
	engine Engine
}

// filtersInput is ConnectedUsersIndicatorFilters. A nil pointer is a field
// omitted or null (no constraint); a pointer to an empty slice is [] (matches
// no user). Enum values arrive as their GraphQL names.
type filtersInput struct {
	AvailabilityStatus *[]string
	ChatAvailability   *[]string
	GroupIds           *[]graphql.ID
	ProjectIds         *[]graphql.ID
	Roles              *[]string
	RoutingGroupIds    *[]graphql.ID
	UserIds            *[]graphql.ID
}

// ConnectedUsersIndicator resolves Query.connectedUsersIndicator for the
// tenant of the request.
func (q *queryResolver) ConnectedUsersIndicator(ctx context.Context, args struct{ Filters *filtersInput }) (*indicatorResolver, error) {
	tenant, e, err := q.target(ctx)
	if err != nil {
		return nil, err
	}
	f, err := args.Filters.filter()
	if err != nil {
		return nil, err
	}
	return newIndicator(e.Query(tenant, f)), nil
}

// target returns the tenant of the request and the engine that answers it
// here: the request's (see execInfo), else the resolver's.
func (q *queryResolver) target(ctx context.Context) (string, Engine, error) {
	info, ok := execFrom(ctx)
	if !ok {
		return "", nil, errors.New("api: no tenant in the request context") // a route without authenticate
	}
	if info.engine != nil {
		return info.tenant, info.engine, nil
	}
	return info.tenant, q.engine, nil
}

// dimensions maps the IndicatorDimension names to the engine's dimensions.
var dimensions = map[string]engine.Dimension{
	"GROUP":               engine.ByGroup,
	"PROJECT":             engine.ByProject,
	"ROUTING_GROUP":       engine.ByRoutingGroup,
	"ROLE":                engine.ByRole,
	"AVAILABILITY_STATUS": engine.ByAvailability,
	"CHAT_AVAILABILITY":   engine.ByChat,
}

// ConnectedUsersIndicatorBreakdown resolves
// Query.connectedUsersIndicatorBreakdown (contract 6.1) from the engine's
// counters.
func (q *queryResolver) ConnectedUsersIndicatorBreakdown(ctx context.Context, args struct {
	By      string
	Filters *filtersInput
}) ([]*byKey, error) {
	tenant, e, err := q.target(ctx)
	if err != nil {
		return nil, err
	}
	by, ok := dimensions[args.By]
	if !ok { // unreachable: graphql-go validates enum values
		return nil, errors.New("api: by: unknown IndicatorDimension " + args.By)
	}
	f, err := args.Filters.filter()
	if err != nil {
		return nil, err
	}
	rows := e.Breakdown(tenant, by, f)
	out := make([]*byKey, len(rows)) // [] rather than null when empty
	for i := range rows {
		out[i] = &byKey{Key: rows[i].Key, Indicator: newIndicator(rows[i].Indicator)}
	}
	return out, nil
}

// byKey is ConnectedUsersIndicatorByKey, read field by field as
// indicatorResolver is.
type byKey struct {
	Key       string
	Indicator *indicatorResolver
}

// filter converts the GraphQL filters to an engine.Filter, keeping null
// (nil slice) apart from [] (empty non-nil slice).
func (in *filtersInput) filter() (*engine.Filter, error) {
	f := &engine.Filter{}
	if in == nil {
		return f, nil
	}
	var err error
	if f.AvailabilityStatus, err = statuses("filters.availabilityStatus", in.AvailabilityStatus); err != nil {
		return nil, err
	}
	if f.ChatAvailability, err = statuses("filters.chatAvailability", in.ChatAvailability); err != nil {
		return nil, err
	}
	if f.GroupIDs, err = ids("filters.groupIds", in.GroupIds); err != nil {
		return nil, err
	}
	if f.ProjectIDs, err = ids("filters.projectIds", in.ProjectIds); err != nil {
		return nil, err
	}
	if f.Roles, err = roles("filters.roles", in.Roles); err != nil {
		return nil, err
	}
	if f.RoutingGroupIDs, err = ids("filters.routingGroupIds", in.RoutingGroupIds); err != nil {
		return nil, err
	}
	if f.UserIDs, err = ids("filters.userIds", in.UserIds); err != nil {
		return nil, err
	}
	return f, nil
}

func checkLen(arg string, n int) error {
	if n > MaxListLen {
		return &limitError{arg: arg, limit: MaxListLen, got: n}
	}
	return nil
}

func ids(arg string, in *[]graphql.ID) ([]string, error) {
	if in == nil {
		return nil, nil
	}
	if err := checkLen(arg, len(*in)); err != nil {
		return nil, err
	}
	out := make([]string, len(*in)) // non-nil even when empty: [] matches nothing
	for i, id := range *in {
		out[i] = string(id)
	}
	return out, nil
}

func statuses(arg string, in *[]string) ([]presence.Status, error) {
	if in == nil {
		return nil, nil
	}
	if err := checkLen(arg, len(*in)); err != nil {
		return nil, err
	}
	out := make([]presence.Status, len(*in))
	for i, name := range *in {
		s, ok := presence.ParseStatus(name)
		if !ok { // unreachable: graphql-go validates enum values
			return nil, errors.New("api: " + arg + ": unknown AvailabilityStatus " + name)
		}
		out[i] = s
	}
	return out, nil
}

func roles(arg string, in *[]string) ([]presence.Role, error) {
	if in == nil {
		return nil, nil
	}
	if err := checkLen(arg, len(*in)); err != nil {
		return nil, err
	}
	out := make([]presence.Role, len(*in))
	for i, name := range *in {
		r, ok := presence.ParseRole(name)
		if !ok { // unreachable: graphql-go validates enum values
			return nil, errors.New("api: " + arg + ": unknown UserRole " + name)
		}
		out[i] = r
	}
	return out, nil
}

// indicatorResolver is ConnectedUsersIndicator, with its two objects (never
// null), filled in from an engine.Indicator up front: graphql-go reads these
// fields (UseFieldResolvers) where it would call one method per field through
// reflect, which cost a quarter of a query's CPU and a third of its
// allocations. One allocation holds all three objects.
type indicatorResolver struct {
	ConnectedUsersCount            int32
	CountByChatAvailabilityStatus  *chatCounts
	UsersInProductionChatOccupancy *occupancy

	chat chatCounts
	occ  occupancy
}

// chatCounts is ChannelGroupAvailabilityStatus.
type chatCounts struct{ Available, Busy, ToggleOff int32 }

// occupancy is UsersInProductionOccupancy.
type occupancy struct {
	MaximumSimultaneousConversationAverage float64
	SimultaneousConversationAverage        float64
	OccupancyRate                          float64
}

func newIndicator(ind engine.Indicator) *indicatorResolver {
	r := &indicatorResolver{
		ConnectedUsersCount: count(ind.Connected),
		chat: chatCounts{
			Available: count(ind.Chat[presence.Available]),
			Busy:      count(ind.Chat[presence.Busy]),
			ToggleOff: count(ind.Chat[presence.ToggleOff]),
		},
		occ: occupancy{
			MaximumSimultaneousConversationAverage: ind.MaxSlotsAverage(),
			SimultaneousConversationAverage:        ind.CurrentSlotsAverage(),
			OccupancyRate:                          ind.OccupancyRate(),
		},
	}
	r.CountByChatAvailabilityStatus, r.UsersInProductionChatOccupancy = &r.chat, &r.occ
	return r
}

// count fits a count into GraphQL's Int (32 bits), saturating rather than
// wrapping.
func count(n int64) int32 {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(n)
}

// execInfo is the one context value of a GraphQL execution: the tenant its
// resolvers answer for, and what names the operation for the duration
// histogram (the operation name, else the root fields), which opTracer
// records. One value rather than one per purpose: each is an allocation.
type execInfo struct {
	tenant string
	// engine answers for the tenant here (the Router's, or Config.Engine).
	engine Engine

	mu    sync.Mutex
	name  string
	field string
}

type execKey struct{}

func withExec(ctx context.Context, info *execInfo) context.Context {
	return context.WithValue(ctx, execKey{}, info)
}

func execFrom(ctx context.Context) (*execInfo, bool) {
	info, ok := ctx.Value(execKey{}).(*execInfo)
	return info, ok
}

// label returns the operation name if any, else the smallest root field name
// (root fields resolve in parallel: "first" must not depend on scheduling).
func (o *execInfo) label() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.name != "" {
		return o.name
	}
	return o.field
}

// opTracer records the operation name and root fields into the request's
// execInfo. It does no tracing otherwise.
type opTracer struct{ noop.Tracer }

func (opTracer) TraceQuery(ctx context.Context, _ string, operationName string, _ map[string]any, _ map[string]*introspection.Type) (context.Context, tracer.QueryFinishFunc) {
	if o, ok := execFrom(ctx); ok {
		o.mu.Lock()
		o.name = operationName
		o.mu.Unlock()
	}
	return noop.Tracer{}.TraceQuery(ctx, "", operationName, nil, nil)
}

func (opTracer) TraceField(ctx context.Context, label, typeName, fieldName string, trivial bool, args map[string]any) (context.Context, tracer.FieldFinishFunc) {
	if typeName == "Query" {
		if o, ok := execFrom(ctx); ok {
			o.mu.Lock()
			if o.field == "" || fieldName < o.field {
				o.field = fieldName
			}
			o.mu.Unlock()
		}
	}
	return noop.Tracer{}.TraceField(ctx, label, typeName, fieldName, trivial, args)
}
