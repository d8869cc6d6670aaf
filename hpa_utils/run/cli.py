"""``hpa`` (and ``python -m hpa_utils``): thin subcommands over the library.

Bad input exits non-zero with one line per problem and no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from hpa_utils.config import runtime
from hpa_utils.config.checks import MAX_IMAGE_SIDE, check_outside
from hpa_utils.config.run_config import RUNS_DIR, cache_dir_for
from hpa_utils.errors import DataError
from hpa_utils.evaluation.submission import format_score, score_submission
from hpa_utils.reporting import render
from hpa_utils.reporting.browser import render_pdf
from hpa_utils.run.publish import publish, render_shipped
from hpa_utils.run.scale import main as scale_main


def _unit_interval(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def cmd_synth(args: argparse.Namespace) -> int:
    # deferred: OpenCV
    from hpa_utils.data.synth import generate_dataset

    summary = generate_dataset(
        args.out,
        n_train=args.n_train,
        n_test=args.n_test,
        size=args.size,
        seed=args.seed,
        test_prior_shift=args.test_prior_shift,
        workers=args.workers,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    verb = "already complete" if summary.get("skipped") else f"written in {summary.get('seconds', 0):.1f} s"
    print(f"{args.out}: {args.n_train} train + {args.n_test} test images at {args.size} px, {verb}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    # deferred: OpenCV
    from hpa_utils.data.dataset import validate_dataset

    report = validate_dataset(args.data_dir, decode=not args.headers_only, workers=args.workers)
    if report.ok:
        print(report.summary())
        return 0
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(f"{args.data_dir}: {len(report.problems)} problem(s) found", file=sys.stderr)
    return 1


def cmd_cache(args: argparse.Namespace) -> int:
    # deferred: OpenCV
    from hpa_utils.data.cache import open_cache
    from hpa_utils.data.dataset import open_dataset

    cache_dir = Path(args.cache_dir) if args.cache_dir else cache_dir_for(args.data_dir)
    check_outside(cache_dir, args.data_dir, "the cache directory")
    dataset = open_dataset(args.data_dir)
    for split in args.splits:
        if split == "test" and not dataset.test_ids:
            continue
        start = time.perf_counter()
        array = open_cache(dataset, split, args.size, cache_dir, workers=args.workers, progress=not args.quiet)
        seconds = time.perf_counter() - start
        print(f"{split}: {array.shape[0]} samples at {args.size} px in {cache_dir} ({seconds:.1f} s)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    # deferred: Keras
    from hpa_utils.training.bench import format_table, run_benchmark

    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    result = run_benchmark(
        data_dir=args.data_dir,
        work_dir=args.work_dir,
        image_size=args.size,
        n_images=args.n_images,
        batch_size=args.batch_size,
        rounds=args.rounds,
        variant=args.variant,
        workers=args.workers,
        processes=args.processes,
        log=log,
    )
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_table(result))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    print(format_score(score_submission(args.submission, args.solution)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    # deferred: nbformat (the runner's notebook fingerprints)
    from hpa_utils.run.runner import NotebookFailed, RunInterrupted, run

    try:
        run(
            args.preset,
            data_dir=args.data_dir,
            output_dir=args.output_dir,
            overrides=args.param,
            force=args.force,
            render=not args.no_report,
        )
    except NotebookFailed as error:
        print(f"hpa run: {error}", file=sys.stderr)
        return 1
    except RunInterrupted as error:
        print(f"hpa run: {error}", file=sys.stderr)
        return 130
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from hpa_utils.config.resolve import resolve_config
    from hpa_utils.config.show import config_yaml

    config = resolve_config(args.preset, args.param, data_dir=args.data_dir, output_dir=args.output_dir)
    print(config_yaml(config), end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    try:
        if args.preset is None and args.output_dir is None:  # the shipped report, from the committed tables
            html = render_shipped()
        else:
            html = render.render_report(Path(args.output_dir or RUNS_DIR / args.preset).resolve())
    except FileNotFoundError as error:
        print(f"hpa report: {error}", file=sys.stderr)
        return 1
    print(f"report: {html}")
    if args.pdf:
        try:
            print(f"pdf: {render_pdf(html)}")
        except RuntimeError as error:
            print(f"hpa report: {error}", file=sys.stderr)
            return 1
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    run_dir = Path(args.output_dir or RUNS_DIR / args.preset).resolve()
    try:
        html = publish(run_dir)
    except FileNotFoundError as error:
        print(f"hpa publish: {error}", file=sys.stderr)
        return 1
    print(f"published {run_dir} -> report/run/, figures/, README.md; report: {html}")
    return 0


def _int_in(low: int, high: int):
    """An argparse type: an integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low} to {high}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    side = _int_in(8, MAX_IMAGE_SIDE)
    count = _int_in(0, 10_000_000)
    threads = _int_in(1, 1024)
    parser = argparse.ArgumentParser(
        prog="hpa",
        description="Human Protein Atlas course-report toolkit: data, training, notebooks and report. "
        "Every expected failure is one line; --debug (anywhere) or HPA_DEBUG=1 shows the traceback.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate the HPA-like synthetic dataset (Kaggle layout)")
    p.add_argument("--out", required=True, type=Path, help="output folder (created atomically)")
    p.add_argument("--n-train", type=_int_in(1, 10_000_000), default=3000, help="training images (default 3000)")
    p.add_argument("--n-test", type=count, default=1000, help="test images (default 1000)")
    p.add_argument("--size", type=side, default=256, help="image side in pixels (default 256; Kaggle: 512)")
    p.add_argument("--seed", type=_int_in(0, 2**32 - 1), default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=threads, default=None, help="processes (default: one per core)")
    p.add_argument(
        "--test-prior-shift",
        type=_unit_interval,
        default=0.0,
        help="0 (default): test label sets drawn as the training ones; up to 1: tilted toward rare sets",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a dataset this generator made (anything else is refused, nothing deleted)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("validate", help="check a Kaggle-layout dataset (train.csv, train/, test/)")
    p.add_argument("data_dir", type=Path, help="folder holding train.csv and train/")
    p.add_argument("--headers-only", action="store_true", help="check PNG headers only, do not decode")
    p.add_argument("--workers", type=threads, default=None, help="decoding threads")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("cache", help="decode a dataset once into the memory-mapped image cache")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--size", type=side, default=128, help="side in pixels (default 128)")
    p.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    p.add_argument("--cache-dir", default=None, help="cache folder (default: .cache/ keyed by the data dir)")
    p.add_argument("--workers", type=threads, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("run", help="execute the notebooks with papermill, then render the report")
    p.add_argument("--preset", default="quick", help="presets/NAME.yaml or a path (default: quick)")
    p.add_argument("--data-dir", type=Path, default=None, help="Kaggle-layout data (default: synthetic)")
    p.add_argument("--output-dir", type=Path, default=None, help="run folder (default: runs/PRESET)")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a preset key (repeatable), e.g. -p train.base.epochs=3 -p train.variants=[0,1]",
    )
    p.add_argument("--force", action="store_true", help="re-run every notebook, even if up to date")
    p.add_argument("--no-report", action="store_true", help="skip rendering the report")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help="print a preset in full: every key, its value and what it does (YAML)")
    p.add_argument("--preset", default="quick", help="presets/NAME.yaml or a path (default: quick)")
    p.add_argument("--data-dir", type=Path, default=None, help="Kaggle-layout data (default: synthetic)")
    p.add_argument("--output-dir", type=Path, default=None, help="run folder (default: runs/PRESET)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a key")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("report", help="render a report (HTML; --pdf through Chromium): the shipped one, or a run's")
    p.add_argument(
        "--preset", default=None, help="render runs/PRESET's report (default: the shipped report/report.html)"
    )
    p.add_argument("--output-dir", type=Path, default=None, help="the run folder (default: runs/PRESET)")
    p.add_argument("--pdf", action="store_true", help="also print the report to PDF with headless Chromium")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("publish", help="ship a finished run: its tables to report/run/, figures/, report, README")
    p.add_argument("--preset", default="standard", help="the run's preset (default: standard)")
    p.add_argument("--output-dir", type=Path, default=None, help="the run folder (default: runs/PRESET)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser(
        "bench", help="training throughput against a plain model.fit reference, the roofline, the input pipeline"
    )
    p.add_argument("--data-dir", type=Path, default=None, help="512-px Kaggle-layout data (default: synthetic)")
    p.add_argument("--work-dir", type=Path, default=Path(".cache/bench"), help="generated data and cache")
    p.add_argument("--size", type=int, default=128, help="model input side (default 128)")
    p.add_argument("--n-images", type=int, default=640, help="images per epoch (default 640)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--variant", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="pipeline threads (default 2)")
    p.add_argument("--processes", default="auto", help="models side by side for (e) (default auto: one per core)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("score", help="macro F1 of a submission on the public and private parts")
    p.add_argument("submission", type=Path, help="submission.csv (Id,Predicted)")
    p.add_argument("solution", type=Path, help="solution.csv (Id,Target,Usage)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "scale",
        help="the Kaggle-scale rehearsal: 31,072 + 11,702 synthetic 512-px Ids, every step that does not train",
        add_help=False,
    )
    p.add_argument("options", nargs="*", help="see hpa scale --help")

    return parser


def describe_os_error(error: OSError) -> str:
    """One line for an operating-system error: what went wrong and the file it happened to."""
    what = error.strerror or str(error)
    files = [str(name) for name in (error.filename, error.filename2) if name]
    return f"{what} ({', '.join(files)})" if files else what


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; every expected failure is one line on stderr and a non-zero exit.

    Bad input (a dataset, a submission, a preset, a value) and the operating system's errors (disk full,
    permission, a missing file) exit 1, Ctrl-C 130; ``--debug`` (or ``HPA_DEBUG=1``) shows the traceback.
    """
    runtime.configure()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("HPA_DEBUG", "") not in ("", "0") or "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    if argv[:1] == ["scale"]:  # its own options (hpa_utils.run.scale)
        return scale_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(
            f"hpa {args.command}: interrupted; finished outputs are kept, re-run the same command to resume",
            file=sys.stderr,
        )
        return 130
    except Exception as error:
        if debug:
            raise
        lines = _expected_failure(error)
        if lines is None:
            raise
        for line in lines:
            print(line if isinstance(error, DataError) else f"hpa {args.command}: {line}", file=sys.stderr)
        return 1


def _expected_failure(error: Exception) -> list[str] | None:
    """The lines that say what went wrong, for the failures a user can meet; None for a bug."""
    if isinstance(error, DataError):
        return error.problems
    if isinstance(error, OSError):
        return [describe_os_error(error)]
    if isinstance(error, (ValueError, MemoryError)):
        return [str(error) or type(error).__name__]
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and isinstance(error, cv2.error):
        return [f"OpenCV could not process an image: {str(error).strip().splitlines()[-1]}"]
    return None


if __name__ == "__main__":
    sys.exit(main())
