-- Claim every seat key for one holder, or none of them, for a short provisional window:
-- the booking is not committed yet, and a claim whose booking never commits (the process
-- died, PostgreSQL said no, the command ran late after the client gave up) must free the
-- seat within seconds. hold_seats.lua extends the keys to the hold's deadline after the commit.
-- KEYS: the seat keys (one screening, one hash tag, so one cluster slot).
-- ARGV[1]: holder token; ARGV[2]: provisional window in ms; ARGV[3]: extra grace in ms
-- before Redis forgets the key on its own.
-- A value is "token|deadline_ms" (deadline by Redis' clock) or "sold|" (permanent).
-- Returns the 1-based positions of the keys held by someone else; empty means all claimed.
local token = ARGV[1]
local ttl = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)

local taken = {}
local stale = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value then
    local owner, deadline = string.match(value, '^(.*)|(%d*)$')
    if owner ~= token then
      if deadline ~= nil and deadline ~= '' and tonumber(deadline) <= now then
        -- The holder's deadline has passed: PostgreSQL no longer counts the hold either.
        stale[#stale + 1] = key
      else
        taken[#taken + 1] = i
      end
    end
  end
end
if #taken > 0 then
  return taken
end
for _, key in ipairs(stale) do
  redis.call('DEL', key)
end
local value = token .. '|' .. string.format('%d', now + ttl)
for _, key in ipairs(KEYS) do
  redis.call('SET', key, value, 'NX', 'PX', ttl + grace)
end
return taken
