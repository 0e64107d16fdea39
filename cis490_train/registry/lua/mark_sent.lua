-- Mark an attempt's message as on the broker, unless the job moved on meanwhile.
-- KEYS: state, unsent; ARGV: attempt, job id.
if redis.call('HGET', KEYS[1], 'attempt') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'sent', 1)
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 0
