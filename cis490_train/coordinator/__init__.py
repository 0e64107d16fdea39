"""The coordinator: the one writer of job state (workers' requests, verified commits) and the reaper."""
