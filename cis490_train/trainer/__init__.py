"""The trainer: one job in a subprocess, from dataset to checkpoint and report.

It never imports Celery (the worker runs it as a child process and reads its
JSON progress lines), and it imports torch and xgboost only inside the model
that needs them.
"""
