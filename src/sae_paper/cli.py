"""The ``sae-paper`` command line: harvest, train, evaluate (or all three with ``run``).

Every command takes one run configuration: ``--config FILE.yaml`` and/or ``--set field=value``
(repeatable; values parsed as YAML, so ``--set alpha=null`` works). ``sae-paper fields`` lists
the fields with their documentation.

``sae-paper book --profile NAME [-p key=value ...]`` executes the notebooks and builds the book;
``sae-paper check-rounding --profile NAME`` records which of its verdicts a one-ulp change of the
activations moves (the scoreboard's rounding marks).
``sae-paper export SAE_DIR OUT_DIR`` writes a saved SAE in SAELens's format.

Errors in the user's input print one line, ``error: …``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import fields

from sae_paper.errors import SaePaperError


def _parse_sets(pairs: list[str]) -> dict:
    import yaml

    values = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise SaePaperError(f"--set takes field=value, got {pair!r}")
        values[name.strip()] = yaml.safe_load(raw)
    return values


def _config(args):
    from sae_paper.core.config import load_config

    return load_config(args.config, **_parse_sets(args.set))


def _cmd_fields(args) -> None:
    from sae_paper.core.config import RunConfig, field_docs

    docs = field_docs()
    for f in fields(RunConfig):
        print(f"{f.name} = {f.default!r}\n    {docs.get(f.name, '')}")


def _cmd_harvest(args) -> None:
    from sae_paper.core.pipeline import Run
    from sae_paper.data.distributed import process_group
    from sae_paper.data.rank_harvest import harvest_all

    run = Run(_config(args))
    with process_group() as here:
        if here.distributed:  # under torchrun: the ranks share the text's shards
            harvest_all([(run.harvest_spec(split), run.site) for split in ("train", "eval")], lambda: run.model,
                        batch_size=run.config.harvest_batch_size, here=here)
        if here.rank:
            return
    for split in ("train", "eval"):
        cache = run.activations(split)
        print(f"{split}: {cache.n_rows:,} activations × {cache.d_in} at {run.site} in {cache.folder}")


def _cmd_train(args) -> None:
    from sae_paper.core.pipeline import Run

    run = Run(_config(args))
    sae = run.sae()
    summary = json.loads((run.sae_dir / "summary.json").read_text())
    print(f"{sae!r}\nsaved in {run.sae_dir}")
    print(json.dumps({k: summary[k] for k in summary if k != "config"}, indent=1))


def _cmd_evaluate(args) -> None:
    from sae_paper.core.pipeline import Run

    run = Run(_config(args))
    evaluation = run.evaluate()
    print(f"{run.config.model} {run.site}, {run.config.sae} SAE, R={run.config.ratio:g}, alpha={run.alpha:g}")
    print("\n".join(evaluation.lines()))


def _cmd_run(args) -> None:
    started = time.perf_counter()
    _cmd_harvest(args)
    _cmd_train(args)
    _cmd_evaluate(args)
    print(f"wall time {time.perf_counter() - started:.0f} s")


def _prepare_args(args) -> list[str]:
    return ["--profile", str(args.profile), *(f"--param={p}" for p in args.param),
            *(f"--notebooks={n}" for n in args.notebooks), *(["--rehearse"] if args.rehearse else [])]


def _cmd_prepare(args) -> None:
    from sae_paper.book.allocator import keep_freed_memory
    from sae_paper.book.distributed import book_parameters, prepare_book
    from sae_paper.data.distributed import process_group

    keep_freed_memory()
    notebooks = [name for entry in args.notebooks for name in entry.split(",") if name]
    parameters = book_parameters(args.profile, args.param, notebooks or None, rehearse=args.rehearse)
    with process_group() as here:
        prepare_book(parameters, here)


def _cmd_book(args) -> None:
    from sae_paper.book.allocator import keep_freed_memory
    from sae_paper.book.runner import run_book

    keep_freed_memory()  # for the harvest here, the lanes and their kernels, torchrun's ranks
    if args.nproc is not None and not (args.validate_only or args.plan):
        from sae_paper.book.distributed import launch_prepare

        launch_prepare(args.nproc, _prepare_args(args))
    notebooks = [name for entry in args.notebooks for name in entry.split(",") if name]
    recompute = [kind for entry in args.recompute for kind in entry.split(",") if kind]
    result = run_book(args.profile, args.param, notebooks or None, validate_only=args.validate_only, recompute=recompute,
                      lanes=args.lanes, rehearse=args.rehearse, plan=args.plan,
                      plan_nproc=args.plan_gpus or ([args.nproc] if args.nproc else [1, 2, 8]))
    if not (args.validate_only or args.plan):
        timings = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.seconds.items())
        reused = f"; reused, not executed: {', '.join(result.reused)}" if result.reused else ""
        print(f"profile {result.profile}: {timings or 'nothing executed'}{reused}")


def _cmd_check_rounding(args) -> None:
    from sae_paper.book.rounding_check import check_rounding

    check_rounding(args.profile, args.param, lanes=args.lanes, keep_scratch=args.keep_scratch)


def _cmd_export(args) -> None:
    from sae_paper.interop.saelens import CONFIG_FILE, WEIGHTS_FILE, export_sae

    out = export_sae(args.sae_dir, args.out_dir, format=args.format, force=args.force)
    print(f"wrote {out / CONFIG_FILE} and {out / WEIGHTS_FILE} ({args.format} format)")


def plain_text(docstring: str) -> str:
    """A docstring as a terminal shows it: reStructuredText roles and literals (``:mod:`~a.b```, ````x````) as bare
    text, so ``--help`` reads like the rest of the terminal and not like the source it was written in."""
    text = re.sub(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", docstring)
    return text.replace("``", "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sae-paper", description=plain_text(__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, function, help_text in (
        ("harvest", _cmd_harvest, "harvest train and held-out activations to the disk cache"),
        ("train", _cmd_train, "train (or resume) the SAE on the cached activations"),
        ("evaluate", _cmd_evaluate, "FVU, L0, alive features and splice CE on held-out text"),
        ("run", _cmd_run, "harvest, train and evaluate"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", help="YAML file of RunConfig fields")
        sub.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override one field")
        sub.set_defaults(function=function)
    commands.add_parser("fields", help="list the config fields and what they mean").set_defaults(function=_cmd_fields)
    book = commands.add_parser("book", help="execute the notebooks with a profile's parameters and build the book")
    book.add_argument("--profile", default="default", help="profiles/NAME.yaml (smoke, default, paper) or a YAML path")
    book.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                      help="override a notebook parameter (value read as YAML); NOTEBOOK.KEY=VALUE for one notebook")
    book.add_argument("--notebooks", action="append", default=[], metavar="NAME",
                      help="run only these notebooks (repeatable or comma-separated; default: all)")
    book.add_argument("--recompute", action="append", default=[], metavar="KIND",
                      help="compute these cached artifacts afresh (activations, sae, evaluation, reference-ce, "
                           "fragments, baselines, ioi-curve, or all; repeatable or comma-separated)")
    book.add_argument("--lanes", type=int, default=None, metavar="N",
                      help="notebooks executed side by side when they do not depend on each other, the cores shared "
                           "out (default: one per core, at most 2; 1: one after another on every core)")
    book.add_argument("--nproc", type=int, default=None, metavar="N",
                      help="first harvest and train every SAE the notebooks read on N torchrun ranks (sae-paper prepare; "
                           "docs/distributed.md), then run the notebooks, which only load")
    book.add_argument("--validate-only", action="store_true",
                      help="check the profile and build every run config, execute nothing")
    book.add_argument("--rehearse", action="store_true",
                      help="run the profile's rehearsal: every code path kept, every budget shrunk by one factor, the "
                           "random-weight models, a local server for openai-compatible backends (offline, on CPU)")
    book.add_argument("--plan", action="store_true",
                      help="print what each notebook would harvest, train, run through the model and ask an LLM, and "
                           "the hours it would take (from a few seconds of calibration); compute nothing")
    book.add_argument("--plan-gpus", type=int, action="append", default=[], metavar="N",
                      help="with --plan: estimate the hours on N GPUs (repeatable; default 1, 2 and 8, or --nproc's N)")
    book.set_defaults(function=_cmd_book)
    prepare = commands.add_parser("prepare", help="harvest and train everything the book's notebooks read, shared "
                                  "over torchrun's ranks (run it under torchrun; docs/distributed.md)")
    prepare.add_argument("--profile", default="default", help="profiles/NAME.yaml or a YAML path")
    prepare.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                         help="override a notebook parameter, as for sae-paper book")
    prepare.add_argument("--notebooks", action="append", default=[], metavar="NAME", help="as for sae-paper book")
    prepare.add_argument("--rehearse", action="store_true", help="the profile's rehearsal, as for sae-paper book")
    prepare.set_defaults(function=_cmd_prepare)
    check = commands.add_parser("check-rounding", help="build the book, build it again on activations one rounding "
                                "step apart, and record which verdicts moved (the scoreboard's rounding marks)")
    check.add_argument("--profile", default="default", help="profiles/NAME.yaml or a YAML path")
    check.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                       help="override a notebook parameter, as for sae-paper book")
    check.add_argument("--lanes", type=int, default=None, metavar="N", help="as for sae-paper book")
    check.add_argument("--keep-scratch", action="store_true",
                       help="keep the one-ulp build's scratch cache and book (under the cache, rounding-check/)")
    check.set_defaults(function=_cmd_check_rounding)
    export = commands.add_parser("export", help="write a saved SAE (sae.json + sae.safetensors) in SAELens's format")
    export.add_argument("sae_dir", metavar="SAE_DIR", help="a folder the library saved an SAE into")
    export.add_argument("out_dir", metavar="OUT_DIR", help="where to write cfg.json and sae_weights.safetensors")
    export.add_argument("--format", default="saelens", help="saelens (the only one so far)")
    export.add_argument("--force", action="store_true", help="write into OUT_DIR even if it is not empty")
    export.set_defaults(function=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.function(args)
    except SaePaperError as error:
        from sae_paper.data.distributed import world

        rank = world()
        print(f"error: {f'rank {rank.rank}: ' if rank.distributed else ''}{error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; everything written so far is kept and a rerun resumes", file=sys.stderr)
        return 130
    return 0
