-- The common case in one INCRBY: a batch of one fixed-window counter.
--
-- KEYS[1]  the counter: an integer, the units counted in its window
-- ARGV[1]  the window (seconds), ARGV[2] the units, ARGV[3] max
--
-- The caller sends only units <= max with max + units <= 2^53, so every count here is exact in
-- a double. The key expires at its window's last millisecond (PEXPIREAT), on the server's
-- clock: it lives exactly as long as its window, and its expiry names the window. A key
-- without expiry is new (or was written by hand): it gets the window of now.
--
-- Returns the key's expiry (milliseconds, >= 0) when the units were admitted and charged, or
-- -1 - wait (microseconds until the window ends) when they were refused and nothing was charged.

local key = KEYS[1]
local c = redis.call('INCRBY', key, ARGV[2])
local refused = c > tonumber(ARGV[3])
if refused then
  -- Over max: take the units back (the script runs atomically: nobody saw them).
  redis.call('DECRBY', key, ARGV[2])
end
local e = redis.call('PEXPIRETIME', key)
if e >= 0 and not refused then
  return e
end
local t = redis.call('TIME')
if e < 0 then
  e = (math.floor(t[1] / ARGV[1]) + 1) * ARGV[1] * 1000 - 1
  redis.call('PEXPIREAT', key, e)
end
if not refused then
  return e
end
local wait = (e + 1) * 1000 - (t[1] * 1000000 + t[2])
if wait < 0 then
  wait = 0
end
return -1 - wait
