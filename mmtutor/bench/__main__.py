"""Command line of the benchmark: ``python -m mmtutor.bench compression --json OUT.json [--only ROW ...]``.

Runs the row modules of a suite one after the other in this process, prints a table line as each row
finishes, writes the rows as a JSON list to ``OUT.json`` and the machine they ran on to ``OUT.meta.json``,
and exits with status 1 if a row module failed or a row missed its target (naming which), 0 otherwise.
``--list`` prints the suite's row modules and their targets without running anything.
"""

from __future__ import annotations

import argparse
import sys

from mmtutor.bench import SUITES, TARGETS, describe_target
from mmtutor.bench.report import (check_output_path, describe_problems, format_header, format_row, machine_info,
                                  resolve_rows, run_suite, write_results)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mmtutor.bench",
        description="Re-measure the book's compression results: size, quality and latency of each compressed "
                    "model against its baseline, side by side in one process.")
    parser.add_argument("suite", choices=sorted(SUITES), help="which suite of rows to run")
    parser.add_argument("--json", metavar="OUT.json", help="write the rows to this JSON file (and the machine "
                                                           "record to OUT.meta.json next to it)")
    parser.add_argument("--only", nargs="+", metavar="ROW", help="run only these row modules (see --list)")
    parser.add_argument("--list", action="store_true", help="list the suite's row modules and targets, run nothing")
    return parser


def _list(suite: str) -> None:
    print(f"row modules of the {suite!r} suite, in the order they run:")
    for module in SUITES[suite]:
        print(f"  {module}")
    print("targets by row name:")
    for name, target in TARGETS.items():
        print(f"  {name}: {describe_target(target)}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        _list(args.suite)
        return 0
    try:
        modules = resolve_rows(args.suite, args.only)
    except (TypeError, ValueError) as error:
        parser.error(f"argument --only: {error}")
    try:  # checked before the rows run, not after ten minutes of measuring
        out = check_output_path(args.json) if args.json is not None else None
    except (TypeError, ValueError) as error:
        parser.error(f"argument --json: {error}")
    print(f"suite {args.suite!r}: {', '.join(modules)}", flush=True)
    print(format_header(), flush=True)
    run = run_suite(args.suite, modules,
                    on_row=lambda row: print(format_row(row), flush=True),
                    on_failure=lambda module, text: print(f"{module}: FAILED\n{text}", file=sys.stderr, flush=True))
    print(f"{len(run.rows)} rows in {run.seconds:.1f} s", flush=True)
    if out is not None:
        rows_file, meta_file = write_results(run.rows, out, meta={
            **machine_info(),
            "suite": args.suite, "rows": list(modules), "failed": sorted(run.failures),
            "seconds": round(run.seconds, 1)})
        print(f"wrote {rows_file} and {meta_file}", flush=True)
    problems = describe_problems(run)
    if problems:
        print(problems, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
