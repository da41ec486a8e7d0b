-- Returns the units of an admitted batch where they still count.
--
-- KEYS[i]  counter i
-- ARGV[1]  the number of requests n, ARGV[2] when the batch was charged (microseconds)
-- then, for each request: window (microseconds), sliding ("1" or "0"), units

local B = 16
local function int(x)
  return string.format('%d', x)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local charged = tonumber(ARGV[2])

for i = 1, n do
  local key = KEYS[i]
  local at = 2 + (i - 1) * 3
  local w = tonumber(ARGV[at + 1])
  local sliding = ARGV[at + 2] == '1'
  local units = tonumber(ARGV[at + 3])
  if sliding then
    local g = math.floor(w / B)
    local b = math.floor(charged / g)
    if b >= math.floor(now / g) - B and redis.call('HEXISTS', key, int(b)) == 1 then
      local left = tonumber(redis.call('HINCRBY', key, int(b), int(-units)))
      if left <= 0 then
        redis.call('HDEL', key, int(b))
      end
    end
  else
    -- Units count where they were charged: the key of the charge's window, which its expiry
    -- (that window's last millisecond) names; a key of a later window has another.
    local last = (math.floor(charged / w) + 1) * (w / 1000) - 1
    if redis.call('PEXPIRETIME', key) == last then
      local left = tonumber(redis.call('DECRBY', key, int(units)))
      if left < 0 then
        redis.call('SET', key, '0', 'KEEPTTL')
      end
    end
  end
end
return 1
