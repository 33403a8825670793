package peer

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// Redis keeps, per tenant t (keys under "p:{t}:", one hash slot per tenant):
// a hash per user (u:<id>: connection, role, statuses, slots, the id lists,
// and the ts of each field), the set of connected users (on), and a set per
// group, project and routing group id (g:<id>, p:<id>, r:<id>) of its
// members. Events are applied by a Lua script (per-field last writer wins,
// membership sets moved when a list changes), sent with EVALSHA in pipelines
// of 1000. The indicator is computed server-side by another script: the
// candidates are the intersection of the connected set with each filtered
// dimension's set (the union of its ids' sets), or the userIds given; each
// candidate's hash is then read, checked against the role and status filters
// and counted.
type Redis struct {
	c          *redis.Client
	apply, ind *redis.Script
}

var _ Peer = (*Redis)(nil)

// listSep joins the ids of a list in one hash field (ids here never hold it).
const listSep = "\x1f"

// The field bits and indexes are those of presence.Fields and presence.Field.
const applyLua = `
local pre, uid, ts = ARGV[1], ARGV[2], ARGV[3]
local typ, fl = tonumber(ARGV[4]), tonumber(ARGV[5])
local ukey = pre .. 'u:' .. uid
local clock = redis.call('HMGET', ukey, 't0','t1','t2','t3','t4','t5','t6','t7','t8')
-- ts are zero-padded decimal strings: comparing them as strings is exact,
-- where Lua's doubles would round nanoseconds.
local function newer(i) local t = clock[i+1]; return (not t) or ts >= t end
local set = {}
local function put(f, v, i) set[#set+1] = f; set[#set+1] = v; set[#set+1] = 't' .. i; set[#set+1] = ts end
if (typ == 1 or typ == 2) and newer(0) then
  put('c', typ == 1 and '1' or '0', 0)
  if typ == 1 then redis.call('SADD', pre .. 'on', uid) else redis.call('SREM', pre .. 'on', uid) end
end
local scalars = {{1, 2, 'r', 6}, {5, 32, 'a', 7}, {6, 64, 'ch', 8}, {7, 128, 'mx', 9}, {8, 256, 'cu', 10}}
for _, s in ipairs(scalars) do
  if bit.band(fl, s[2]) ~= 0 and newer(s[1]) then put(s[3], ARGV[s[4]], s[1]) end
end
local lists = {{2, 4, 'g', 11, 'g:'}, {3, 8, 'pj', 12, 'p:'}, {4, 16, 'rg', 13, 'r:'}}
for _, l in ipairs(lists) do
  if bit.band(fl, l[2]) ~= 0 and newer(l[1]) then
    local new = ARGV[l[4]]
    local old = redis.call('HGET', ukey, l[3])
    if old ~= new then
      if old then for id in string.gmatch(old, '[^\031]+') do redis.call('SREM', pre .. l[5] .. id, uid) end end
      for id in string.gmatch(new, '[^\031]+') do redis.call('SADD', pre .. l[5] .. id, uid) end
    end
    put(l[3], new, l[1])
  end
end
if #set > 0 then redis.call('HSET', ukey, unpack(set)) end
return #set / 4
`

const indicatorLua = `
local pre = ARGV[1]
local rm, am, cm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local zero = {0, 0, 0, 0, 0, 0, 0}
local i = 5
local nu = tonumber(ARGV[i]); i = i + 1
local uids
if nu >= 0 then
  uids = {}
  local seen = {}
  for k = 1, nu do
    local u = ARGV[i]; i = i + 1
    if not seen[u] then seen[u] = true; uids[#uids+1] = u end
  end
end
local sets, tmp = {pre .. 'on'}, {}
local dims = {'g:', 'p:', 'r:'}
for d = 1, 3 do
  local k = tonumber(ARGV[i]); i = i + 1
  if k == 0 then return zero end
  if k == 1 then
    sets[#sets+1] = pre .. dims[d] .. ARGV[i]; i = i + 1
  elseif k > 1 then
    local keys = {}
    for j = 1, k do keys[j] = pre .. dims[d] .. ARGV[i]; i = i + 1 end
    local t = pre .. 'tmp:' .. d
    redis.call('SUNIONSTORE', t, unpack(keys))
    sets[#sets+1] = t; tmp[#tmp+1] = t
  end
end
local members
if uids then
  members = {}
  for _, u in ipairs(uids) do
    local ok = true
    for _, s in ipairs(sets) do
      if redis.call('SISMEMBER', s, u) == 0 then ok = false; break end
    end
    if ok then members[#members+1] = u end
  end
else
  members = redis.call('SINTER', unpack(sets))
end
if #tmp > 0 then redis.call('DEL', unpack(tmp)) end
local n, c0, c1, c2, np, mx, cu = 0, 0, 0, 0, 0, 0, 0
for _, u in ipairs(members) do
  local h = redis.call('HMGET', pre .. 'u:' .. u, 'r', 'a', 'ch', 'mx', 'cu')
  local r, a, ch = tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0')
  if bit.band(rm, bit.lshift(1, r)) ~= 0 and bit.band(am, bit.lshift(1, a)) ~= 0 and bit.band(cm, bit.lshift(1, ch)) ~= 0 then
    n = n + 1
    if ch == 0 then c0 = c0 + 1 elseif ch == 1 then c1 = c1 + 1 else c2 = c2 + 1 end
    if ch == 1 or ch == 2 then
      np = np + 1
      mx = mx + tonumber(h[4] or '0')
      cu = cu + tonumber(h[5] or '0')
    end
  end
end
return {n, c0, c1, c2, np, mx, cu}
`

// NewRedis connects to the Redis server at addr and loads the scripts.
func NewRedis(ctx context.Context, addr string) (*Redis, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 4, ReadTimeout: -1, WriteTimeout: -1})
	r := &Redis{c: c, apply: redis.NewScript(applyLua), ind: redis.NewScript(indicatorLua)}
	for _, s := range []*redis.Script{r.apply, r.ind} {
		if err := s.Load(ctx, c).Err(); err != nil {
			c.Close()
			return nil, fmt.Errorf("redis: loading a script: %w", err)
		}
	}
	return r, nil
}

func (r *Redis) Name() string { return "Redis (Lua)" }

func prefix(tenant string) string { return "p:{" + tenant + "}:" }

// tsString pads ts so that strings compare as the numbers do.
func tsString(ts int64) string {
	s := strconv.FormatInt(ts, 10)
	if len(s) < 20 {
		s = strings.Repeat("0", 20-len(s)) + s
	}
	return s
}

func (r *Redis) Load(ctx context.Context, tenant string, evs []presence.Event) error {
	pre := prefix(tenant)
	const batch = 1000
	for i := 0; i < len(evs); i += batch {
		pipe := r.c.Pipeline()
		for k := i; k < min(i+batch, len(evs)); k++ {
			ev := &evs[k]
			r.apply.EvalSha(ctx, pipe, nil, pre, ev.UserID, tsString(ev.TS), int(ev.Type), int(ev.Fields),
				int(ev.Role), int(ev.Availability), int(ev.Chat), int(ev.MaxSlots), int(ev.CurrentSlots),
				strings.Join(ev.GroupIDs, listSep), strings.Join(ev.ProjectIDs, listSep), strings.Join(ev.RoutingGroupIDs, listSep))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("redis: applying events: %w", err)
		}
	}
	return nil
}

func (r *Redis) Query(ctx context.Context, tenant string, f *engine.Filter) (engine.Indicator, error) {
	m := masksOf(f)
	args := []any{prefix(tenant), int(m.roles), int(m.availability), int(m.chat)}
	list := func(ids []string) {
		if ids == nil {
			args = append(args, -1)
			return
		}
		args = append(args, len(ids))
		for _, id := range ids {
			args = append(args, id)
		}
	}
	list(f.UserIDs)
	list(f.GroupIDs)
	list(f.ProjectIDs)
	list(f.RoutingGroupIDs)
	v, err := r.ind.EvalSha(ctx, r.c, nil, args...).Int64Slice()
	if err != nil {
		return engine.Indicator{}, fmt.Errorf("redis: indicator: %w", err)
	}
	var ind engine.Indicator
	ind.Connected = v[0]
	ind.Chat[presence.ToggleOff], ind.Chat[presence.Available], ind.Chat[presence.Busy] = v[1], v[2], v[3]
	ind.InProduction, ind.MaxSlots, ind.CurrentSlots = v[4], v[5], v[6]
	return ind, nil
}

func (r *Redis) Reset(ctx context.Context) error { return r.c.FlushAll(ctx).Err() }

func (r *Redis) Close() error { return r.c.Close() }

// UsedMemory returns Redis's used_memory, in bytes.
func (r *Redis) UsedMemory(ctx context.Context) (int64, error) {
	info, err := r.c.InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
}
