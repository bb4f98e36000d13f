-- The fixed-window counter of the rate limits, one definition for the scripts that count:
-- loaded in front of rate_limit.lua and claim_seats.lua (cinema/holds.py `lua_source`).
-- Returns the hits in the key's window (this one included) and the ms until it ends.
local function count_hit(key, window_ms)
  local hits = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    -- first hit of the window (or a key that somehow lost its expiry): start the window
    redis.call('PEXPIRE', key, window_ms)
    ttl = tonumber(window_ms)
  end
  return hits, ttl
end
