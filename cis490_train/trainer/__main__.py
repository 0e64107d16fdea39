import os

# OpenMP threads that spin while they wait turn a busy host's 1 s fit into minutes; set before xgboost or torch load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .run import main  # noqa: E402

raise SystemExit(main())
