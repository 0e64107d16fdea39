"""Datasets, models and what they scored: data synth/import/check, models, evaluate, results, export."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..config import Settings
from ..errors import UsageError
from ..operator import details
from ..operator.views import plain
from .common import Commands, add_manifest_filter, emit, open_registry, out


def _synth(args, settings: Settings) -> int:
    from ..trainer.data import synthesize

    target = Path(args.out) if args.out else settings.data_dir
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()] if args.hosts else None
    synthesize(
        target,
        small=args.small,
        seed=args.seed,
        hosts=hosts,
        windows_per_host=args.windows,
        n_features=args.features,
        n_oracle=args.oracle_features,
        seq_len=args.seq_len,
        n_channels=args.channels,
    )
    out.print(f"wrote synthetic dataset to {target}")
    return 0


def _import(args, settings: Settings) -> int:
    from ..trainer.data import describe_dataset
    from ..trainer.sources import import_dataset

    target = Path(args.out) if args.out else settings.data_dir
    schema = import_dataset(Path(args.source), target, fmt=args.format, name=args.name, pad=args.pad)
    summary = describe_dataset(target)
    if args.json:
        return emit(args, {**summary.to_dict(), "source": schema.source})
    out.print(plain(_imported_line(schema, summary.windows, target)), soft_wrap=True)  # one line, the path unbroken
    return 0


def _imported_line(schema, windows: int, target: Path) -> str:
    """`imported GunPoint (ts): 200 windows, 2 classes, 1 channel x 150 steps, 24 features -> DIR`."""

    def count(k: int, noun: str, plural: str = "s") -> str:
        return f"{k} {noun}{'' if k == 1 else plural}"

    source = schema.source
    return (
        f"imported {source['name']} ({source['format']}): {count(windows, 'window')}, "
        f"{count(len(schema.classes), 'class', 'es')}, {count(len(schema.channels), 'channel')} x "
        f"{count(schema.seq_len, 'step')}, {count(len(schema.features), 'feature')} -> {target}"
    )


def _check(args, settings: Settings) -> int:
    from ..trainer.data import describe_dataset

    summary = describe_dataset(Path(args.dir) if args.dir else settings.data_dir)
    return emit(args, summary.to_dict(), *details.dataset_lines(summary))


def _models(args, settings: Settings) -> int:
    from ..core.hyper import MODELS, schema
    from ..trainer.models import IMPLEMENTATIONS

    rows = [{"model": m, "implemented": bool(IMPLEMENTATIONS.get(m)), "hyper": [p.describe() for p in schema(m)]} for m in MODELS]
    return emit(args, rows, *details.models_view(rows))


def _evaluate(args, settings: Settings) -> int:
    """A bundle path is used as it is; anything else names an artifact in the store by id or prefix."""
    from ..artifacts.bundle import extract_bundle
    from ..artifacts.client import StoreClient
    from ..trainer.rescore import rescore

    data = Path(args.data) if args.data else settings.data_dir
    with tempfile.TemporaryDirectory(prefix="cis490-evaluate-") as tmp:
        bundle = Path(args.artifact)
        if not bundle.is_file():
            with StoreClient(settings.store_url, settings.worker_token) as client:
                bundle = client.download(client.resolve(args.artifact), Path(tmp) / "bundle.tar.zst").path
        checkpoint = extract_bundle(bundle, Path(tmp) / "checkpoint")
        result = rescore(checkpoint, data, n_resamples=args.n_resamples)
    return emit(args, result, *details.evaluate_lines(result))


def _results(args, settings: Settings) -> int:
    from ..operator.views import leaderboard_rows, results_table

    rows = leaderboard_rows(open_registry(settings).jobs(manifest=args.manifest))
    return emit(args, rows, results_table(rows))


def _export(args, settings: Settings) -> int:
    from ..operator.export import DEFAULT_NAMES, write
    from ..operator.views import leaderboard_rows

    records = open_registry(settings).jobs(manifest=args.manifest)
    path = Path(args.output or DEFAULT_NAMES[args.format])
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give -o a file name, e.g. {path / DEFAULT_NAMES[args.format]}")
    try:
        n = write(leaderboard_rows(records), path, args.format)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    out.print(f"wrote {n} row{'s' if n != 1 else ''} to {path}")
    return 0


def add_models(commands: Commands) -> None:
    commands.add("models", _models, "the nine models and their hyperparameters (name, type, default, range, help)")


def add_evaluate(commands: Commands) -> None:
    p = commands.add("evaluate", _evaluate, "download a bundle, load it and score it again on a dataset (same split)")
    p.add_argument("artifact", help="artifact id (or a unique prefix), or a bundle.tar.zst path")
    p.add_argument("--data", help="dataset directory (default: CIS490_DATA_DIR)")
    p.add_argument("--n-resamples", type=int, default=1000)


def add_results(commands: Commands) -> None:
    p = commands.add("results", _results, "the leaderboard of completed jobs")
    add_manifest_filter(p)


def add_data(commands: Commands) -> None:
    data = commands.group("data", "datasets")
    synth = data.add_parser("synth", help="write the deterministic synthetic dataset")
    synth.add_argument("--out", help="directory (default: CIS490_DATA_DIR)")
    synth.add_argument("--small", action="store_true", help="the small preset used by the tests")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--hosts", help="comma-separated host names (the first is the default train host)")
    synth.add_argument("--windows", type=int, help="windows per host")
    synth.add_argument("--features", type=int, help="realistic summary features")
    synth.add_argument("--oracle-features", type=int, help="oracle-only summary features")
    synth.add_argument("--seq-len", type=int, help="time steps per window tensor")
    synth.add_argument("--channels", type=int, help="channels per time step")
    synth.set_defaults(func=_synth)
    imp = data.add_parser(
        "import", help="bring a UCR/UEA .ts problem, NumPy arrays or a Parquet table of windows into the data contract"
    )
    imp.add_argument("source", help="a <Name>_TRAIN.ts file or a directory holding the pair; a directory with X.npy and y.npy; a .parquet file")
    imp.add_argument("--out", help="dataset directory to write (default: CIS490_DATA_DIR)")
    imp.add_argument("--format", default="auto", metavar="{auto,ts,npy,parquet}", help="the source's format (default auto: told by its name)")
    imp.add_argument("--name", help="the dataset's name in its schema (default: the problem's, directory's or file's name)")
    imp.add_argument("--pad", action="store_true", help="pad unequal-length .ts series at the end with their last value")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=_import)
    check = data.add_parser("check", help="validate a dataset against the data contract")
    check.add_argument("dir", nargs="?", help="dataset directory (default: CIS490_DATA_DIR)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=_check)


def add_export(commands: Commands) -> None:
    p = commands.add("export", _export, "write the results table (completed jobs) as a Parquet or CSV file", json_flag=False)
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="file format (default parquet)")
    p.add_argument("-o", "--output", metavar="FILE", help="file to write (default results.parquet / results.csv)")
    add_manifest_filter(p)
