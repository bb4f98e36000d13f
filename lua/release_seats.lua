-- Delete each seat key only if it still belongs to this holder, and the screening's
-- sold-out marker (general admission) unconditionally: whatever is released is free again.
-- KEYS[1]: the screening's sold-out marker; KEYS[2..]: the seat keys (one hash tag).
-- ARGV[1]: holder token. Returns how many seat keys were deleted.
local prefix = ARGV[1] .. '|'
local deleted = 0
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
  local key = KEYS[i]
  local value = redis.call('GET', key)
  if value and string.sub(value, 1, #prefix) == prefix then
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
return deleted
