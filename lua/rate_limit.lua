-- Fixed-window counter: one call per request, atomic, one round trip (count_hit.lua is
-- loaded in front of this file). KEYS[1] the window's counter; ARGV[1] window length, ms.
-- Returns {hits in this window, ms until the window ends}.
local hits, ttl = count_hit(KEYS[1], ARGV[1])
return {hits, ttl}
