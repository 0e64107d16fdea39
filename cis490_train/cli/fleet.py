"""The fleet's services: run, acl, coordinator, store serve, metrics serve, flower."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

from ..config import Settings
from ..errors import UsageError
from ..operator.views import plain
from .common import Commands, out


def _run(args, settings: Settings) -> int:
    from ..operator.run import run_manifest

    return run_manifest(Path(args.manifest), settings, workers=args.workers, console=out, keep_dir=args.keep)


def _acl(args, settings: Settings) -> int:
    """The file (hashed passwords only) goes to --output, 0600, or stdout; the URLs to give out go to stderr."""
    from ..operator.acl import OPERATOR, WORKER, broker_url, new_password, render_acl

    operator = settings.operator_password or new_password()
    worker = settings.worker_password or new_password()
    try:
        text = render_acl(operator, worker)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.output:
        from ..atomic import write_private

        try:
            write_private(Path(args.output), text.encode())
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
    print(f"operators: CIS490_BROKER_URL={broker_url(OPERATOR, operator, args.host, args.port)}", file=sys.stderr)
    print(f"workers:   CIS490_BROKER_URL={broker_url(WORKER, worker, args.host, args.port)}", file=sys.stderr)
    if not args.output:
        print(text, end="")
    return 0


def _coordinator(args, settings: Settings) -> int:
    from ..coordinator.service import run

    run(settings)
    return 0


def _store_serve(args, settings: Settings) -> int:
    from ..artifacts.server import serve

    root = Path(args.root) if args.root else settings.store_root
    limits = {k: v for k, v in (("idle_timeout_s", args.idle_timeout), ("max_connections", args.max_connections)) if v is not None}
    serve(root=root, host=args.host, port=args.port, token=settings.store_token(root), max_bytes=settings.max_upload_bytes, **limits)
    return 0


def _metrics_serve(args, settings: Settings) -> int:
    from ..operator.metrics import serve
    from ..registry import Registry

    def ready(url: str) -> None:
        print(f"serving fleet metrics on {url}", flush=True)

    try:
        serve(Registry(settings.broker_url), args.host, args.port, ready=ready)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


def _flower(args, settings: Settings) -> NoReturn:
    """Flower, which can revoke tasks and shut workers down: on loopback unless told otherwise and
    never without basic auth. The credentials stay in FLOWER_BASIC_AUTH, which Flower reads
    itself, so they never reach a command line that ps shows."""
    users = [u for u in os.environ.get("FLOWER_BASIC_AUTH", "").split(",") if u.strip()]
    if not users:
        raise UsageError("FLOWER_BASIC_AUTH is not set: export FLOWER_BASIC_AUTH=user:password (several: user1:pw1,user2:pw2); Flower never runs without a password")
    if not all(user.partition(":")[0] and user.partition(":")[2] for user in users):
        raise UsageError("FLOWER_BASIC_AUTH must be user:password, several comma-separated (user1:pw1,user2:pw2)")
    for arg in args.flower_args:
        option = arg.split("=", 1)[0].replace("_", "-")
        if option == "--basic-auth":
            raise UsageError("--basic-auth would put the password on the command line, where ps shows it; set FLOWER_BASIC_AUTH instead")
        if option in ("--address", "--port"):
            raise UsageError(f"{option} goes before --: cis490-train flower {option} ...")
    address = args.address or os.environ.get("FLOWER_ADDRESS") or "127.0.0.1"
    port = args.port or os.environ.get("FLOWER_PORT") or "5555"
    if not (str(port).isdigit() and 0 < int(port) < 65536):
        raise UsageError(f"port {port!r} (--port or FLOWER_PORT): give a port from 1 to 65535")
    argv = [sys.executable, "-m", "celery", "-A", "cis490_train", "flower", f"--address={address}", f"--port={port}", *args.flower_args]
    print(plain(f"starting Flower on {address}:{port} (basic auth from FLOWER_BASIC_AUTH)"), flush=True)
    os.execv(argv[0], argv)  # this process becomes Flower: signals reach it directly


def add_run(commands: Commands) -> None:
    p = commands.add("run", _run, "everything on this machine: private Redis, store and worker; train a manifest end to end", json_flag=False)
    p.add_argument("manifest")
    p.add_argument("--workers", type=int, default=1, help="worker processes to start (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the run's temporary directory (logs, Redis data)")


def add_acl(commands: Commands) -> None:
    p = commands.add("acl", _acl, "write a Redis ACL file (hashed passwords) with the operator and worker users; their broker URLs go to stderr", json_flag=False)
    p.add_argument("-o", "--output", metavar="FILE", help="write the ACL file here, mode 0600 (default: stdout)")
    p.add_argument("--host", default="127.0.0.1", help="the Redis host the printed URLs name")
    p.add_argument("--port", type=int, default=6379)


def add_coordinator(commands: Commands) -> None:
    commands.add("coordinator", _coordinator, "apply workers' requests to the registry and run the reaper (operator credential)", json_flag=False)


def add_store(commands: Commands) -> None:
    store = commands.group("store", "the artifact store")
    serve = store.add_parser("serve", help="run the artifact store's HTTP service")
    serve.add_argument("--root", help="storage directory (default: CIS490_STORE_ROOT)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8490)
    serve.add_argument("--idle-timeout", type=float, metavar="S", help="close a connection that sends no complete request headers for S seconds (default 60)")
    serve.add_argument("--max-connections", type=int, metavar="N", help="close new connections while N are open (default 256)")
    serve.set_defaults(func=_store_serve)


def add_metrics(commands: Commands) -> None:
    metrics = commands.group("metrics", "Prometheus metrics of the fleet")
    serve = metrics.add_parser("serve", help="serve the fleet's Prometheus metrics, read from Redis on each scrape")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9490, help="port (default 9490)")
    serve.set_defaults(func=_metrics_serve)


def add_flower(commands: Commands) -> None:
    p = commands.add("flower", _flower, "the Flower dashboard on loopback, behind the basic auth of FLOWER_BASIC_AUTH", json_flag=False)
    p.add_argument("--address", help="address to bind (default FLOWER_ADDRESS, else 127.0.0.1)")
    p.add_argument("--port", help="port (default FLOWER_PORT, else 5555)")
    p.add_argument("flower_args", nargs="*", metavar="-- FLOWER_ARGS", help="more Flower options, after --")
