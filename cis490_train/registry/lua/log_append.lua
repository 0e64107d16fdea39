-- Append a batch of log entries in one call: ARGV = cap, ttl, then entries as (field count, field,
-- value, ...); a lone `line` field holds many lines joined by newlines, one stream entry each.
-- KEYS[1] the attempt's stream.
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  if n == 1 and ARGV[i + 1] == 'line' then
    local text, from = ARGV[i + 2], 1
    while true do
      local nl = string.find(text, '\n', from, true)
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'line', string.sub(text, from, (nl or 0) - 1))
      if not nl then break end
      from = nl + 1
    end
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, i + 1, i + 2 * n))
  end
  i = i + 1 + 2 * n
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 0
