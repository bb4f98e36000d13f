-- After PostgreSQL committed the booking: make every seat key the booking's until the hold's
-- deadline. Unconditional, since PostgreSQL says these seats are ours now, whatever Redis
-- thought (a provisional claim of ours, a late claim of someone else, nothing after a flush);
-- only a "sold|" marker stays, as a paid seat never goes back to being a hold.
-- KEYS: the seat keys (one screening, one hash tag). ARGV[1]: holder token; ARGV[2]: the
-- hold's deadline in ms since the epoch (PostgreSQL's expires_at); ARGV[3]: grace in ms.
-- Returns how many keys were written (none once the deadline has passed).
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local deadline = tonumber(ARGV[2])
if deadline <= now then
  return 0
end
local value = ARGV[1] .. '|' .. ARGV[2]
local ttl = deadline - now + tonumber(ARGV[3])
local written = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) ~= 'sold|' then
    redis.call('SET', key, value, 'PX', ttl)
    written = written + 1
  end
end
return written
