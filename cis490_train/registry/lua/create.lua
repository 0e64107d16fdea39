-- Create a job only if it does not exist: concurrent enqueues of one manifest insert it once.
-- KEYS: state, spec, jobs set, job id, fallbacks, unsent; ARGV: spec JSON, fallback due ('' for none),
-- now, then the state's fields and values.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], KEYS[4])
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[5], ARGV[2], KEYS[4]) end
redis.call('ZADD', KEYS[6], ARGV[3], KEYS[4])
return 1
