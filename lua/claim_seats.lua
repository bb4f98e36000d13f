-- Claim every seat key for one holder, or none of them, for a short provisional window:
-- the booking is not committed yet, and a claim whose booking never commits (the process
-- died, PostgreSQL said no, the command ran late after the client gave up) must free the
-- seat within seconds. hold_seats.lua extends the keys to the hold's deadline after the commit.
-- KEYS: the seat keys (one screening, one hash tag, so one cluster slot).
-- ARGV[1]: holder token; ARGV[2]: provisional window in ms; ARGV[3]: extra grace in ms
-- before Redis forgets the key on its own.
-- A value is "token|deadline_ms" (deadline by Redis' clock) or "sold|" (permanent).
-- Returns the 1-based positions of the seat keys held by someone else; empty: all claimed.
-- With ARGV[4] (a rate limit) and ARGV[5] (its window in ms), the request is counted first,
-- in the same call, as lua/rate_limit.lua counts (count_hit.lua, loaded in front of this
-- file): KEYS[1] is then the caller's window
-- counter (one Redis only: on a cluster it lives in another slot than the seats). The reply
-- then starts with {hits, ms until the window ends}; over the limit nothing is claimed and
-- that is the whole reply.
local token = ARGV[1]
local ttl = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local first = 1
local taken = {}
if ARGV[4] then
  local hits, window_left = count_hit(KEYS[1], ARGV[5])
  if hits > tonumber(ARGV[4]) then
    return {hits, window_left}
  end
  taken = {hits, window_left}
  first = 2
end
local counted = #taken
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)

local stale = {}
for i = first, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value then
    local owner, deadline = string.match(value, '^(.*)|(%d*)$')
    if owner ~= token then
      if deadline ~= nil and deadline ~= '' and tonumber(deadline) <= now then
        -- The holder's deadline has passed: PostgreSQL no longer counts the hold either.
        stale[#stale + 1] = KEYS[i]
      else
        taken[#taken + 1] = i - first + 1
      end
    end
  end
end
if #taken > counted then
  return taken
end
for _, key in ipairs(stale) do
  redis.call('DEL', key)
end
local value = token .. '|' .. string.format('%d', now + ttl)
for i = first, #KEYS do
  redis.call('SET', KEYS[i], value, 'NX', 'PX', ttl + grace)
end
return taken
