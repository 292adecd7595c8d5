package redis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// trimScript trims the stream KEYS[1] towards ARGV[1] entries.
//
// Safe mode (ARGV[2] == "0"): the threshold is the smallest, over the
// stream's groups, of the oldest pending ID (XPENDING summary) and the ID
// just after the last delivered one (XINFO GROUPS); every entry below it was
// acknowledged by every group. The script removes entries below the
// threshold, at most XLEN-MaxLen of them, whole radix nodes only (MINID ~
// LIMIT). Without groups it trims with MAXLEN ~.
//
// Lossy mode (ARGV[2] == "1"): trims to exactly MaxLen (MAXLEN =) and counts
// the removed entries at or above the threshold, which some group had not
// acknowledged, and the groups whose own threshold was passed.
//
// It returns {removed, length before, threshold, lost, groups that lost}.
var trimScript = goredis.NewScript(`
local len = redis.call('XLEN', KEYS[1])
local maxlen = tonumber(ARGV[1])
if len <= maxlen then return {0, len, '', 0, {}} end
local function parse(id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
local function below(ams, aseq, bms, bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
local bms, bseq
local bounds = {}
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local ms, seq
  if tonumber(f['pending']) > 0 then
    local sum = redis.call('XPENDING', KEYS[1], f['name'])
    ms, seq = parse(sum[2])
  else
    ms, seq = parse(f['last-delivered-id'])
    seq = seq + 1
  end
  bounds[#bounds + 1] = {f['name'], ms, seq}
  if bms == nil or below(ms, seq, bms, bseq) then bms, bseq = ms, seq end
end
if bms == nil then
  return {redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', maxlen), len, '', 0, {}}
end
local threshold = string.format('%.0f-%.0f', bms, bseq)
if ARGV[2] ~= '1' then
  return {redis.call('XTRIM', KEYS[1], 'MINID', '~', threshold, 'LIMIT', len - maxlen), len, threshold, 0, {}}
end
local over = redis.call('XRANGE', KEYS[1], threshold, '+', 'COUNT', len - maxlen)
local n = redis.call('XTRIM', KEYS[1], 'MAXLEN', maxlen)
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local fms, fseq = math.huge, 0
if #first > 0 then fms, fseq = parse(first[1][1]) end
local lost = 0
for _, e in ipairs(over) do
  local ms, seq = parse(e[1])
  if not below(ms, seq, fms, fseq) then break end
  lost = lost + 1
end
local losers = {}
for _, b in ipairs(bounds) do
  if below(b[2], b[3], fms, fseq) and lost > 0 then losers[#losers + 1] = b[1] end
end
return {n, len, threshold, lost, losers}
`)

// markTrim records that key was published to.
func (a *Adapter) markTrim(key string) {
	a.tmu.Lock()
	a.trimSet[key] = true
	a.tmu.Unlock()
}

// trimLoop trims, every TrimInterval, the streams published to since the
// last round and those a lagging group kept above MaxLen.
func (a *Adapter) trimLoop() {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.TrimInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-a.ctx.Done():
			return
		}
		a.tmu.Lock()
		keys := make([]string, 0, len(a.trimSet))
		for k := range a.trimSet {
			keys = append(keys, k)
		}
		clear(a.trimSet)
		a.tmu.Unlock()
		for _, k := range keys {
			if again := a.trim(a.ctx, k); again {
				a.markTrim(k)
			}
		}
	}
}

// trimResult is what one run of trimScript reports.
type trimResult struct {
	removed, before int64
	threshold       string
	lost            int64
	losers          []string
}

// trim trims one stream and reports whether it should be looked at again
// (still longer than MaxLen, or the attempt failed).
func (a *Adapter) trim(ctx context.Context, key string) bool {
	r, err := a.trimOnce(ctx, key)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("redis: trimming failed", "stream", key, "error", err)
		}
		return ctx.Err() == nil
	}
	if r.lost > 0 {
		a.log.Warn("redis: trimming removed entries that consumer groups had not acknowledged (TrimUnacknowledged)",
			"stream", key, "removed", r.removed, "unacknowledged", r.lost, "groups", r.losers)
	}
	return r.before-r.removed > a.cfg.MaxLen
}

func (a *Adapter) trimOnce(ctx context.Context, key string) (trimResult, error) {
	lossy := "0"
	if a.cfg.TrimUnacknowledged {
		lossy = "1"
	}
	v, err := trimScript.Run(ctx, a.rdb, []string{key}, a.cfg.MaxLen, lossy).Slice()
	if err != nil {
		return trimResult{}, err
	}
	var r trimResult
	if len(v) == 5 {
		r.removed, _ = v[0].(int64)
		r.before, _ = v[1].(int64)
		r.threshold, _ = v[2].(string)
		r.lost, _ = v[3].(int64)
		if ls, ok := v[4].([]any); ok {
			for _, l := range ls {
				if s, ok := l.(string); ok {
					r.losers = append(r.losers, s)
				}
			}
		}
	}
	return r, nil
}
