-- Number a seat change and publish it on the screening's shard channel, atomically, so ids
-- increase per screening in the order subscribers receive them.
-- KEYS[1]: the screening's change counter ({screening:ID} hash tag: same slot as the channel)
-- ARGV[1]: the shard channel, ARGV[2]: the change (JSON), ARGV[3]: counter lifetime (s)
local id = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SPUBLISH', ARGV[1], id .. ' ' .. ARGV[2])
return id
