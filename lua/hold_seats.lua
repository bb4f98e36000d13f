-- After PostgreSQL committed the booking: extend the seat keys the booking's provisional
-- claim still holds to the hold's deadline. Only keys whose value is this holder's are
-- written: the extension runs after the buyer has had the answer, so it may arrive after a
-- release (a cancel right after booking) or after the provisional claim lapsed and someone
-- else claimed the seat; re-setting such a key would refuse a seat PostgreSQL calls free or
-- hide another buyer's claim. A key that is gone (released, flushed, lapsed) stays gone:
-- buyers then reach PostgreSQL, which refuses them. A "sold|" marker is never ours.
-- KEYS: the seat keys (one screening, one hash tag). ARGV[1]: holder token; ARGV[2]: the
-- hold's deadline in ms since the epoch (PostgreSQL's expires_at); ARGV[3]: grace in ms.
-- Returns how many keys were written (none once the deadline has passed).
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local deadline = tonumber(ARGV[2])
if deadline <= now then
  return 0
end
local prefix = ARGV[1] .. '|'
local value = ARGV[1] .. '|' .. ARGV[2]
local ttl = deadline - now + tonumber(ARGV[3])
local written = 0
for _, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current and string.sub(current, 1, #prefix) == prefix then
    redis.call('SET', key, value, 'PX', ttl)
    written = written + 1
  end
end
return written
