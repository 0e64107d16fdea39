"""The trainer: one job in a subprocess, from dataset to checkpoint and report.

It never imports Celery (the worker runs it as a child process and reads its
JSON progress lines), and it imports torch and xgboost only inside the model
that needs them.
"""

# Exit codes the worker reads (besides 0, 1 unexpected, 2 a problem the user can fix).
EXIT_OOM = 3
EXIT_ORPHANED = 4
PARENT_PID_ENV = "CIS490_PARENT_PID"
