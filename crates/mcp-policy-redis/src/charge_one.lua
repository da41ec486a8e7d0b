-- The common case in one INCRBY: a batch of one fixed-window counter.
--
-- KEYS[1]  the counter: an integer, the units counted in its window
-- ARGV[1]  the window (seconds), ARGV[2] the units, ARGV[3] max
--
-- The caller sends only units <= max with max + units <= 2^53, so every count here is exact in
-- a double. The key expires at its window's last millisecond (PEXPIREAT), on the server's
-- clock: it lives exactly as long as its window, and its expiry names the window.
--
-- Returns the key's expiry (milliseconds, >= 0) when the units were admitted and charged, or
-- -1 - wait (microseconds until the window ends) when they were refused and nothing was charged.

local key = KEYS[1]
local c = redis.call('INCRBY', key, ARGV[2])
if c > tonumber(ARGV[3]) then
  -- Over max: take the units back (Redis runs the script atomically, nobody saw them).
  redis.call('DECRBY', key, ARGV[2])
  local t = redis.call('TIME')
  local e = redis.call('PEXPIRETIME', key)
  if e < 0 then
    -- A count without expiry (written by hand): it gets its window.
    e = (math.floor(t[1] / ARGV[1]) + 1) * ARGV[1] * 1000 - 1
    redis.call('PEXPIREAT', key, e)
  end
  local wait = (e + 1) * 1000 - (t[1] * 1000000 + t[2])
  if wait < 0 then
    wait = 0
  end
  return -1 - wait
end
if c ~= tonumber(ARGV[2]) then
  -- A counter of this window: its expiry is already set.
  local e = redis.call('PEXPIRETIME', key)
  if e >= 0 then
    return e
  end
end
-- A new counter (or one refunded to 0): it expires at the end of the window of now.
local t = redis.call('TIME')
local e = (math.floor(t[1] / ARGV[1]) + 1) * ARGV[1] * 1000 - 1
redis.call('PEXPIREAT', key, e)
return e
