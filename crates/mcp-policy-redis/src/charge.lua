-- Checks and charges a batch of counters atomically, on the server's clock.
--
-- KEYS[i]  counter i
-- ARGV[1]  the number of requests n
-- then, for each request: window (microseconds), sliding ("1" or "0"), max, units
-- then, optionally, `check`: answer without charging (read-only)
--
-- Fixed windows: the key holds the count as an integer and expires at its window's last
-- millisecond (PEXPIREAT), so its expiry names its window (as in charge_one.lua). A key that
-- expires before the window of now is left over from the window before: it counts nothing.
-- Sliding windows: the hash holds one field per bucket (window / 16) with that bucket's units;
-- units count until their bucket's end plus the window.
--
-- Returns {1, now_us} when every request was admitted and charged, or {0, index, retry_us}
-- (index 0-based, retry_us -1 when the units can never be admitted) when none was charged.
-- A check answers the same and charges nothing.

local B = 16
-- Integers as digits: Lua would write large numbers in exponent form.
local function int(x)
  return string.format('%d', x)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])

local state = {}
local refused = nil
local retry = 0

for i = 1, n do
  local key = KEYS[i]
  local at = 1 + (i - 1) * 4
  local w = tonumber(ARGV[at + 1])
  local sliding = ARGV[at + 2] == '1'
  local max = tonumber(ARGV[at + 3])
  local units = tonumber(ARGV[at + 4])
  local s = state[key]
  if s == nil then
    if sliding then
      local g = math.floor(w / B)
      local cur = math.floor(now / g)
      local fields = redis.call('HGETALL', key)
      local buckets = {}
      local stale = {}
      local newest = -1
      local total = 0
      for j = 1, #fields, 2 do
        local b = tonumber(fields[j])
        local c = tonumber(fields[j + 1])
        if b ~= nil and c ~= nil and b >= cur - B then
          total = total + c
          buckets[#buckets + 1] = { b, c }
          if b > newest then
            newest = b
          end
        else
          stale[#stale + 1] = fields[j]
        end
      end
      table.sort(buckets, function(x, y) return x[1] < y[1] end)
      s = { count = total, buckets = buckets, g = g, cur = cur, stale = stale, newest = newest }
    else
      local win = math.floor(now / w)
      -- The window's last millisecond; w is whole seconds, so this is exact.
      local last = (win + 1) * (w / 1000) - 1
      local c = 0
      local fresh = false
      local ends = last
      local expiry = nil
      local v = redis.call('GET', key)
      if v then
        expiry = redis.call('PEXPIRETIME', key)
        -- No expiry (-1): a count written by hand, kept (and given its window below).
        if expiry == -1 or expiry >= last then
          c = tonumber(v)
          if c == nil then
            return redis.error_reply('counter `' .. key .. '` does not hold an integer')
          end
          fresh = true
          if expiry > last then
            ends = expiry
          end
        end
      end
      s = { count = c, win = win, fresh = fresh, last = last, ends = ends, expiry = expiry }
    end
    s.added = 0
    state[key] = s
  end
  -- count + added never exceeds max <= 2^53, so these differences are exact in a double,
  -- where count + added + units might not be.
  local room = max - units
  local held = s.count + s.added
  if room < 0 or held > room then
    local excess = held - room
    local wait = -1
    if excess <= s.count then
      if sliding then
        local freed = 0
        for _, bc in ipairs(s.buckets) do
          freed = freed + bc[2]
          if freed >= excess then
            wait = (bc[1] + 1 + B) * s.g - now
            break
          end
        end
      else
        wait = (s.ends + 1) * 1000 - now
      end
    end
    if refused == nil then
      refused = i - 1
    end
    if wait < 0 or retry < 0 then
      retry = -1
    elseif wait > retry then
      retry = wait
    end
  end
  s.added = s.added + units
end

if refused ~= nil then
  return { 0, refused, int(retry) }
end
-- A check (a trailing argument `check`) ends here: it answers as a charge would and never
-- writes.
if ARGV[n * 4 + 2] == 'check' then
  return { 1, int(now) }
end

-- Each counter is written once, with the units of every request of the batch on it. Expiry is
-- set only when a new window (or bucket) starts; it is already right otherwise.
local done = {}
for i = 1, n do
  local key = KEYS[i]
  local s = state[key]
  if not done[key] then
    done[key] = true
    local w = tonumber(ARGV[1 + (i - 1) * 4 + 1])
    if s.g ~= nil then
      if #s.stale > 0 then
        redis.call('HDEL', key, unpack(s.stale))
      end
      redis.call('HINCRBY', key, int(s.cur), int(s.added))
      if s.cur > s.newest then
        redis.call('PEXPIREAT', key, int(math.ceil((s.cur + 1 + B) * s.g / 1000) + 1000))
      end
    elseif s.fresh then
      redis.call('INCRBY', key, int(s.added))
      if s.expiry == -1 then
        redis.call('PEXPIREAT', key, int(s.last))
      end
    else
      redis.call('SET', key, int(s.added), 'PXAT', int(s.last))
    end
  end
end
return { 1, int(now) }
