"""`python -m cis490_train.enqueue MANIFEST`, as the fleet has always been fed: `cis490-train enqueue MANIFEST`."""

import sys

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main(["enqueue", *sys.argv[1:]]))
