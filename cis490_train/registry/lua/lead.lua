-- Hold or take a lock (the reaper's): it lapses if its holder dies. A lock without an expiry was
-- not set by this code and is taken over.
-- KEYS[1] the lock; ARGV[1] the holder, ARGV[2] its lifetime in ms.
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
