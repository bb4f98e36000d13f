-- Turn seat keys into permanent "sold|" markers: PostgreSQL has confirmed the sale, so
-- whoever else Redis thinks holds the seat (after a flush, say) has lost it already.
-- KEYS: the seat keys (one screening, one hash tag). Returns how many keys were written.
for _, key in ipairs(KEYS) do
  redis.call('SET', key, 'sold|')
end
return #KEYS
