-- Jobs per status, counted inside Redis: one round trip and ~1 us a job (a pipelined HGET per job
-- costs the client ~10 us a job). Its keys come as arguments: a key in KEYS must be writable by the
-- caller, and the worker and metrics users may only read them. Fine on the one Redis of a fleet,
-- not on a cluster.
-- ARGV: the jobs set, the prefix of job state keys.
local counts = {}
for _, id in ipairs(redis.call('SMEMBERS', ARGV[1])) do
  local status = redis.call('HGET', ARGV[2] .. id, 'status')
  if status then counts[status] = (counts[status] or 0) + 1 end
end
local out = {}
for status, n in pairs(counts) do
  out[#out + 1] = status
  out[#out + 1] = n
end
return out
