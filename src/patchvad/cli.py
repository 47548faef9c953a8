"""The ``patchvad`` command line. Thin: parse, call the library, print.

Every library error (:class:`~patchvad.errors.PatchvadError`) is printed as one
line naming the file and the problem, with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from patchvad.errors import PatchvadError


def _grid(text: str) -> int | tuple[int, int]:
    """``--grid``: ``N`` or ``HxW``; anything else is a usage error (exit status 2), not a traceback."""
    try:
        if "x" in text.lower():
            h, w = text.lower().split("x")
            return (int(h), int(w))
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not N or HxW (e.g. 14 or 7x9)") from None


def _cmd_synth(args: argparse.Namespace) -> int:
    from patchvad.data.synth import synth_command
    from patchvad.data.synth.footage import footage_command
    from patchvad.errors import ConfigError

    if (args.root is None) == (args.out is None):
        raise ConfigError("give the output folder once: as ROOT or as --out ROOT")
    root = Path(args.root or args.out)
    if args.background is not None:
        if args.oracle_labels is not None:
            raise ConfigError("--oracle-labels applies to the painted benchmark only, not to --background")
        footage_command(args.background, root, train=args.train, test=args.test, seed=args.seed,
                        clip_frames=args.clip_frames, width=args.width, scale=args.scale, workers=args.workers,
                        overwrite=args.overwrite)
        return 0
    if (args.scale, args.clip_frames, args.width) != (None, None, None):
        raise ConfigError("--scale, --clip-frames and --width apply to --background FOOTAGE only")
    synth_command(root, train=args.train, test=args.test, seed=args.seed, preset=args.preset,
                  workers=args.workers, overwrite=args.overwrite, oracle_labels=args.oracle_labels)
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from patchvad.features.extract import extract_command

    report = extract_command(Path(args.root), Path(args.out), backbone=args.backbone, grid=args.grid,
                             input_size=args.input_size, snippet_len=args.snippet_len, stride=args.stride,
                             passes=args.passes, motion=not args.no_motion, device=args.device,
                             batch_size=args.batch_size, splits=tuple(args.splits.split(",")),
                             threads=args.threads, decode_workers=args.decode_workers)
    return 1 if report.failed else 0


def _cmd_reduce(args: argparse.Namespace) -> int:
    from patchvad.features.reduce import reduce_command

    reduce_command(Path(args.features), Path(args.data), Path(args.out), dim=args.dim, samples=args.samples,
                   seed=args.seed)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from patchvad.metrics.evaluate import evaluate_command

    evaluate_command(Path(args.dataset), Path(args.predictions), Path(args.out) if args.out else None)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from patchvad.data.adapters import prepare_command

    prepare_command(args.dataset, Path(args.source), Path(args.out), copy_videos=args.copy, strict=not args.lenient,
                    frames_as=args.frames_as, options=args.option, workers=args.workers)
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from patchvad.training import fit_command

    fit_command(Path(args.data), Path(args.features), Path(args.out), method=args.method, seed=args.seed,
                config=Path(args.config) if args.config else None, resume=args.resume, quiet=args.quiet,
                oracle_labels=Path(args.oracle_labels) if args.oracle_labels else None)
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from patchvad.ensemble import ensemble_command

    ensemble_command(args)
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    from patchvad.inference import test_command

    test_command(argparse.Namespace(ckpt=Path(args.ckpt), data=Path(args.data), features=Path(args.features),
                                    out=Path(args.out)))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from patchvad.predict import predict_command

    report = predict_command(args.source, Path(args.ckpt), Path(args.out), stream=args.stream,
                             threshold=args.threshold, device=args.device, delay=args.delay, history=args.history,
                             overlay=not args.no_overlay, force=args.force, report_page=args.report)
    return 1 if report.failed else 0


def _cmd_adapt(args: argparse.Namespace) -> int:
    from patchvad.adapt import adapt_command

    adapt_command(Path(args.ckpt), args.normal, Path(args.out), false_alarms=args.false_alarms, device=args.device)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from patchvad.demo import demo_command

    demo_command(Path(args.out), preset=args.preset, seeds=args.seeds, ablate=args.ablate, jobs=args.jobs)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from patchvad.compare import compare_command, experiment_command

    command = experiment_command("compare", args.data, args.features, args.out, methods=args.methods,
                                 seeds=args.seeds, config=args.config or None,
                                 oracle_labels=args.oracle_labels or None, jobs=args.jobs)
    compare_command(Path(args.data), Path(args.features), Path(args.out), methods=args.methods, seeds=args.seeds,
                    config=Path(args.config) if args.config else None, fresh=args.fresh, jobs=args.jobs,
                    command=command, oracle_labels=Path(args.oracle_labels) if args.oracle_labels else None)
    return 0


def _cmd_curves(args: argparse.Namespace) -> int:
    from patchvad.compare import experiment_command
    from patchvad.curves import curves_command

    command = experiment_command("curves", args.data, args.features, args.out, extra=["--sizes", *args.sizes],
                                 methods=args.methods, seeds=args.seeds, config=args.config or None,
                                 oracle_labels=args.oracle_labels or None, jobs=args.jobs)
    curves_command(Path(args.data), Path(args.features), Path(args.out), sizes=args.sizes, methods=args.methods,
                   seeds=args.seeds, config=Path(args.config) if args.config else None,
                   oracle_labels=Path(args.oracle_labels) if args.oracle_labels else None, jobs=args.jobs,
                   fresh=args.fresh, command=command)
    return 0


def _method_help() -> str:
    from patchvad.model.methods import METHODS

    return "; ".join(f"{name}: {m.description}" for name, m in METHODS.items())


class _PrepareHelp(argparse.Action):
    """``prepare --help``: the usual help followed by the datasets.

    The list comes from the adapter registry, imported only when the help is asked
    for (importing every adapter takes about a second).
    """

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from patchvad.data.adapters import datasets_help

        parser.epilog = datasets_help()
        parser.print_help()
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``patchvad`` parser: one subcommand per verb."""
    # Imported here, not at module level: the installed ``patchvad`` script imports this
    # module, and so does every process that multiprocessing's "spawn" starts from it (it
    # re-imports the parent's main script). The methods pull in torch, about 2-7 s a
    # process, which the synthetic benchmark's workers never use.
    from patchvad.model.methods import METHODS

    parser = argparse.ArgumentParser(prog="patchvad", description="Where and when anomalies happen in video, "
                                     "learned from video-level labels.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the main job: benchmark, features, all methods over seeds, report")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--preset", default="small", choices=["small", "full", "tiny"],
                   help="small: what make demo runs; full: more data; tiny: a smoke test")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--ablate", action="store_true", help="also run the ablation table (window, selection, k, ...)")
    p.add_argument("--jobs", type=int, default=None,
                   help="fits run in parallel processes (default: one per core, at most 4)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("synth", help="generate the synthetic surveillance benchmark, or anomalies in your footage")
    p.add_argument("root", nargs="?", help="output folder (or --out)")
    p.add_argument("--out", default=None, help="output folder (same as ROOT)")
    p.add_argument("--background", metavar="FOOTAGE", default=None,
                   help="draw the anomalies into clips of this real video (docs/synthetic.md, 'Your own footage')")
    p.add_argument("--scale", default=None, metavar="H|TOP,BOTTOM",
                   help="with --background: a standing person's height in footage px, or the heights with the feet "
                        "on the top and on the bottom row (default: estimated from the footage's motion)")
    p.add_argument("--clip-frames", type=int, default=None, help="with --background: frames per clip (default 8 s)")
    p.add_argument("--width", type=int, default=None, help="with --background: clip width (default the footage's)")
    p.add_argument("--train", type=int, default=None, help="training videos (default: the preset's; footage: 20)")
    p.add_argument("--test", type=int, default=None, help="test videos (default: the preset's; footage: 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="default",
                   help="default, quick (alias demo), large, tiny: fixed cameras; newcam, newcam-large, "
                        "newcam-tiny: a new camera in every video; see docs/synthetic.md")
    p.add_argument("--overwrite", action="store_true", help="replace an existing benchmark in ROOT")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--oracle-labels", default=None, metavar="DIR",
                   help="also write the TRAINING videos' boxes into DIR (outside ROOT), for a supervised oracle only")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("extract", help="extract grid-level patch features of a dataset folder")
    p.add_argument("root", help="dataset folder (manifest.csv)")
    p.add_argument("--out", required=True, help="feature folder")
    p.add_argument("--backbone", default="effnet-lite0")
    p.add_argument("--grid", default="14", type=_grid, help="cells per side, or HxW (default 14)")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--snippet-len", type=int, default=16)
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--passes", type=int, default=2, help="backbone passes per snippet")
    p.add_argument("--no-motion", action="store_true", help="leave out the pixel motion channels")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8, help="snippets per backbone batch")
    p.add_argument("--splits", default="train,test")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per process (default: cores / processes on this node)")
    p.add_argument("--decode-workers", type=int, default=0,
                   help="decode videos in this many processes (GPU: one per spare core, e.g. 15; also "
                        "isolates FFmpeg: a crash on a hostile file fails only that video)")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("reduce", help="fit a PCA on the training videos' features; write a reduced feature store")
    p.add_argument("features", help="feature folder (from patchvad extract)")
    p.add_argument("--data", required=True, help="its dataset folder (the projection is fitted on its train split)")
    p.add_argument("--out", required=True, help="reduced feature folder to write")
    p.add_argument("--dim", type=int, required=True, help="channels of the reduced features (motion's 8 included)")
    p.add_argument("--samples", type=int, default=200_000, help="patch tokens sampled to fit the PCA")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_reduce)

    p = sub.add_parser("fit", help="train a model from video-level labels")
    p.add_argument("--data", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--method", default="proximity", choices=list(METHODS), help=_method_help())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None)
    p.add_argument("--resume", action="store_true", help="continue from RUN/train_state.safetensors")
    p.add_argument("--oracle-labels", default=None, metavar="DIR",
                   help="training ground truth for --method oracle only (patchvad synth ... --oracle-labels DIR)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("test", help="score the test split; write the predictions folder")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_test)

    p = sub.add_parser("compare", help="fit, test and evaluate methods x seeds; a table of mean and spread")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--features", required=True, help="its feature folder")
    p.add_argument("--out", required=True, help="output folder (runs, predictions, results.json, results.md)")
    p.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), metavar="METHOD",
                   help="registered methods (default: all: " + ", ".join(METHODS) + "; oracle only with "
                        "--oracle-labels)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                   help="training seeds (a method whose output does not depend on the seed runs the first only)")
    p.add_argument("--config", default=None, help="YAML run configuration for every method")
    p.add_argument("--oracle-labels", default=None, metavar="DIR",
                   help="training ground truth for the oracle's fits only (patchvad synth ... --oracle-labels DIR); "
                        "the table then adds weak / oracle ratios")
    p.add_argument("--fresh", action="store_true", help="fit and test again runs already in results.json")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("curves", help="learning curves: compare at several training-set sizes; table, figure, page")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--features", required=True, help="its feature folder")
    p.add_argument("--out", required=True, help="output folder (n<size>/ per size, curves.json/md/png/html)")
    p.add_argument("--sizes", nargs="+", type=int, required=True, metavar="N",
                   help="training videos per size (a nested, label-stratified subset; validation part included)")
    p.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), metavar="METHOD",
                   help="registered methods (default: all; oracle only with --oracle-labels)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--config", default=None, help="YAML run configuration (train.train_videos is set per size)")
    p.add_argument("--oracle-labels", default=None, metavar="DIR",
                   help="training ground truth for the oracle's fits only; adds weak / oracle ratios")
    p.add_argument("--fresh", action="store_true", help="fit and test again runs already done")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    p.set_defaults(func=_cmd_curves)

    p = sub.add_parser("ensemble", help="average the maps of several seeds' predictions folders (docs/model.md)")
    p.add_argument("members", nargs="+", type=Path, help="predictions folders from `patchvad test` (2 or more)")
    p.add_argument("--data", required=True, type=Path, help="the dataset folder they predict (test split)")
    p.add_argument("--out", required=True, type=Path, help="predictions folder to write")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("predict", help="run a trained model on videos, a folder, a glob or a stream")
    p.add_argument("source", help="video file, frame folder, folder of videos, glob, URL (rtsp://...) or /dev/videoN")
    p.add_argument("--ckpt", required=True, help="model.safetensors")
    p.add_argument("--out", required=True, help="output folder (one subfolder per video)")
    p.add_argument("--stream", action="store_true", help="online: snippet by snippet, past context only")
    p.add_argument("--threshold", type=float, default=None, help="event threshold (default: the checkpoint's)")
    p.add_argument("--delay", type=int, default=1, help="streaming look-ahead in snippets")
    p.add_argument("--history", type=int, default=64, help="streaming past context in snippets")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4")
    p.add_argument("--force", action="store_true",
                   help="recompute videos a previous run already finished with this checkpoint and settings")
    p.add_argument("--report", action="store_true",
                   help="also write OUT/report.html: per video the score timeline, the events with thumbnails and "
                        "the overlay video (docs/predict.md)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("adapt", help="refit a model to your own camera from its ordinary footage (docs/own-camera.md)")
    p.add_argument("--ckpt", required=True, help="model.safetensors to adapt")
    p.add_argument("--normal", required=True, nargs="+", metavar="FOOTAGE",
                   help="ordinary footage of the camera (no labels): video files, frame folders, folders, globs")
    p.add_argument("--out", required=True, help="the adapted checkpoint to write (.safetensors)")
    p.add_argument("--false-alarms", type=float, default=0.01,
                   help="fraction of the footage's frames allowed at or above the new threshold (default 0.01)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_adapt)

    p = sub.add_parser("evaluate", help="compute every metric of a predictions folder")
    p.add_argument("--dataset", required=True)
    p.add_argument("--predictions", required=True)
    p.add_argument("--out", default=None)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("prepare", help="turn a public dataset's official files into the generic folder",
                       description="Read a public dataset as its download unpacks and write the generic "
                       "dataset folder (docs/datasets.md).", add_help=False,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action=_PrepareHelp, help="show this help, with every dataset, and exit")
    p.add_argument("dataset", help="one of the datasets listed below")
    p.add_argument("--source", required=True, help="the dataset as downloaded (read only)")
    p.add_argument("--out", required=True, help="the dataset folder to write; one folder per dataset")
    p.add_argument("--copy", action="store_true", help="copy videos into the folder instead of referencing")
    p.add_argument("--lenient", action="store_true", help="report count mismatches instead of failing")
    p.add_argument("--frames-as", choices=["folder", "mp4"], default="folder",
                   help="reference frame folders as they are (default) or transcode them to mp4")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="adapter option, e.g. hold=16 (UCF-Crime boxes held for 16 frames); see docs/datasets.md")
    p.add_argument("--workers", type=int, default=4, help="parallel probes of video files")
    p.set_defaults(func=_cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``patchvad`` command line; return the exit code.

    A :class:`~patchvad.errors.PatchvadError` is printed on one line (exit code 2), an
    interrupt says that finished work is kept (130).

    Args:
        argv: the arguments after the program name (None: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PatchvadError as exc:
        print(f"patchvad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"patchvad {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
