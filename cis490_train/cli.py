"""The `cis490-train` command: a thin shell that parses, calls, prints and picks exit codes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import Settings, ensure_store_token
from .errors import Cis490Error


def _cmd_store_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .artifacts.server import serve

    root = Path(args.root) if args.root else settings.store_root
    token = settings.worker_token if args.root is None else None
    import os

    token = os.environ.get("CIS490_WORKER_TOKEN") or ensure_store_token(root)
    serve(root=root, host=args.host, port=args.port, token=token, max_bytes=settings.max_upload_bytes)
    return 0


def _cmd_data_synth(args: argparse.Namespace, settings: Settings) -> int:
    from .trainer.data import synthesize

    out = Path(args.out) if args.out else settings.data_dir
    synthesize(out, small=args.small, seed=args.seed)
    print(f"wrote synthetic dataset to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cis490-train")
    sub = parser.add_subparsers(dest="command", required=True)

    store = sub.add_parser("store", help="the artifact store").add_subparsers(dest="store_command", required=True)
    serve = store.add_parser("serve", help="run the artifact store's HTTP service")
    serve.add_argument("--root")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8490)
    serve.set_defaults(func=_cmd_store_serve)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="write the synthetic dataset")
    synth.add_argument("--out")
    synth.add_argument("--small", action="store_true")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_cmd_data_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, Settings.from_env())
    except Cis490Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
