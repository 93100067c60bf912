"""Command line: ``kdfair grid`` trains/loads a grid and prints its accuracy table;
``kdfair run`` executes the notebook series and writes the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .grid import PROFILES, get_profile, run_grid


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [_parse_value(part) for part in text.split(",") if part]
    return text


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["student_train.epochs=5", "seeds=0,1,2"]`` → ``{"student_train.epochs": 5, "seeds": [0, 1, 2]}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        parsed = _parse_value(value)
        if key in ("seeds", "teacher_seeds", "temperatures") and not isinstance(parsed, list):
            parsed = [parsed]
        out[key] = parsed
    return out


def _grid_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = parse_overrides(args.set or [])
    for name in ("label", "teacher", "student"):
        if getattr(args, name):
            overrides[name] = getattr(args, name)
    if args.seeds:
        overrides["seeds"] = args.seeds
    if args.temperatures:
        overrides["temperatures"] = args.temperatures
    return overrides


def cmd_grid(args: argparse.Namespace) -> int:
    cfg = get_profile(args.profile, **_grid_overrides(args))
    result = run_grid(cfg, runs_dir=args.runs_dir, data_dir=args.data_dir, device=args.device,
                      progress=not args.quiet)
    table = result.accuracy_table()
    print(f"profile {args.profile}: {cfg.dataset}/{cfg.label}, {cfg.teacher} -> {cfg.student}, "
          f"{len(result.specs)} models")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .series import run_series

    report = run_series(args.profile, out_dir=args.out, runs_dir=args.runs_dir, data_dir=args.data_dir,
                        device=args.device, extra_parameters=parse_overrides(args.param or []),
                        progress=not args.quiet)
    print(f"report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdfair", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
        p.add_argument("--runs-dir", type=Path, default=None, help="cache of trained models (default $KDFAIR_RUNS or runs/)")
        p.add_argument("--data-dir", type=Path, default=None, help="datasets (default $KDFAIR_DATA or data/)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    g = sub.add_parser("grid", help="train (or load) a teacher/NDS/DS grid and print accuracies")
    common(g)
    g.add_argument("--label", help="e.g. shape, shape_color, shape_texture")
    g.add_argument("--teacher")
    g.add_argument("--student")
    g.add_argument("--seeds", type=int, nargs="+")
    g.add_argument("--temperatures", type=float, nargs="+")
    g.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="any grid field, e.g. student_train.epochs=5 or data_options.image_size=24")
    g.set_defaults(func=cmd_grid)

    r = sub.add_parser("run", help="execute the notebook series and write the report")
    common(r)
    r.add_argument("--out", type=Path, default=None, help="output folder (default runs/<profile>/)")
    r.add_argument("--param", action="append", metavar="NAME=VALUE", help="extra notebook parameter")
    r.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        parser.exit(2, f"kdfair: error: {exc}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
