-- Extend an address's leases that this process still holds (gone ones are not re-added).
-- KEYS[1]: the address's leases; ARGV[1]: lifetime (ms); ARGV[2..]: lease ids
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
