-- Delete each seat key only if it still belongs to this holder.
-- KEYS: the seat keys; ARGV[1]: holder token. Returns how many keys were deleted.
local prefix = ARGV[1] .. '|'
local deleted = 0
for _, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value and string.sub(value, 1, #prefix) == prefix then
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
return deleted
