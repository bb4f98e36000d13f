-- Fixed-window counter: one call per request, atomic, one round trip.
-- KEYS[1] the window's counter; ARGV[1] window length, ms.
-- Returns {hits in this window, ms until the window ends}.
local hits = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  -- first hit of the window (or a key that somehow lost its expiry): start the window
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {hits, ttl}
