-- Take one of a client address's live-stream places, counted over every API process.
-- KEYS[1]: the address's leases (sorted set: lease id -> expiry, ms of Redis's clock)
-- ARGV[1]: lease id, ARGV[2]: the cap, ARGV[3]: a lease's lifetime (ms)
-- Returns 1 (taken) or 0 (the address has its cap open). A process that dies leaves its
-- leases to expire; a live one renews them (live_lease_renew.lua).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
