-- The units counted against one counter now, on the server's clock; writes nothing.
--
-- KEYS[1]  the counter
-- ARGV[1]  the window (microseconds), ARGV[2] sliding ("1" or "0")
--
-- Returns the count as digits.

local B = 16
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local w = tonumber(ARGV[1])
local key = KEYS[1]
local total = 0
if ARGV[2] == '1' then
  local cur = math.floor(now / math.floor(w / B))
  local fields = redis.call('HGETALL', key)
  for j = 1, #fields, 2 do
    local b = tonumber(fields[j])
    local c = tonumber(fields[j + 1])
    if b ~= nil and c ~= nil and b >= cur - B then
      total = total + c
    end
  end
else
  local last = (math.floor(now / w) + 1) * (w / 1000) - 1
  local v = redis.call('GET', key)
  if v then
    local expiry = redis.call('PEXPIRETIME', key)
    if expiry == -1 or expiry >= last then
      total = tonumber(v)
      if total == nil then
        return redis.error_reply('counter `' .. key .. '` does not hold an integer')
      end
    end
  end
end
return string.format('%d', total)
