-- Let go of that lock, if this holder has it: a coordinator that stops hands over at once.
-- KEYS[1] the lock; ARGV[1] the holder.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
