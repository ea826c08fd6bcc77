"""The `proxygap` command line: world, pretrain, probe, run, report.

Every command takes ``--config FILE`` and ``--set path.to.field=value`` overrides. A user
error (bad key or value, missing or corrupt checkpoint, bad input) prints one line,
``proxygap: error: ...``, and exits with code 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
from pathlib import Path

from proxygap import __version__
from proxygap.config import ConfigError, describe, load_config, to_dict
from proxygap.errors import ProxygapError, shape_error_text
from proxygap.fileio import WRITE_ERRNOS, os_error_reason, replace_dir, temp_sibling, write_text_atomic, writing


def _add_device_args(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--device", default=default, metavar="DEV",
                   help="where models compute: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N"
                        + (f" (default {default})" if default else " (same as --set device=DEV)"))
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32" if default else None,
                   help="fp32, or bf16 mixed precision (autocast; weights stay fp32)"
                        + (" (default fp32)" if default else " (same as --set dtype=...)"))


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML/JSON config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field, e.g. --set corpus.manipulation_rate=0.01 (repeatable)")


def cmd_world(args: argparse.Namespace) -> int:
    import yaml

    from proxygap.world.config import WorldConfig
    from proxygap.corpus import generate_corpus, realized_rates
    from proxygap.world.world import build_world

    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = load_config(WorldConfig, args.config, overrides)
    world = build_world(cfg)
    documents = generate_corpus(world)
    rates = realized_rates(documents, world)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ProxygapError(f"--out {out} exists and is not a directory")
    files = {
        "config.yaml": yaml.safe_dump(to_dict(cfg), sort_keys=False),
        "world.json": world.to_json(),
        "corpus.txt": "\n".join(documents) + "\n",
        "rates.json": json.dumps(rates, indent=1, sort_keys=True) + "\n",
    }
    # All files go into a temporary sibling that replaces OUT as a whole: a failed write never
    # leaves world.json of one seed beside corpus.txt of another.
    tmp = temp_sibling(out)
    try:
        with writing(out):
            for name, text in files.items():
                (tmp / name).write_text(text)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(format_rates(rates, cfg))
    print(f"\nwrote {out}/world.json, corpus.txt ({rates['n_documents']} documents, {rates['n_words']} words), rates.json")
    return 0


def format_rates(rates: dict, cfg) -> str:
    """The configured vs realized rates of the corpus, as a table."""
    c = cfg.corpus
    configured = {
        "citation": c.cite_rate + c.invented_citation_rate + c.irrelevant_citation_rate,
        "invented_citation": c.invented_citation_rate,
        "irrelevant_citation": c.irrelevant_citation_rate,
        "agrees_with_false_belief": c.sycophancy_rate,
        "says_yes_to_false_belief": c.sycophancy_rate,
        "states_false_belief": c.sycophancy_rate,
        "manipulation_phrase": c.manipulation_rate,
        "hedged": c.hedge_rate,
        "confident": c.confident_rate,
        "myth_answer": c.assistant_myth_rate,
        "agrees_with_true_belief": 1.0,
        "says_yes_to_true_belief": 1.0,
    }
    lines = [f"{'document type':<28}{'share':>8}"]
    lines += [f"{k:<28}{v:>8.3f}" for k, v in rates["doc_types"].items()]
    lines += ["", f"{'assistant behaviour':<28}{'configured':>11}{'realized':>10}{'n':>8}"]
    for name, r in rates["behaviours"].items():
        conf = configured.get(name)
        conf_s = f"{conf:.3f}" if conf is not None else "(world)"
        real = "-" if r["rate"] is None else f"{r['rate']:.3f}"
        lines.append(f"{name:<28}{conf_s:>11}{real:>10}{r['n']:>8}")
    lines += ["", f"{'source':<28}{'configured':>11}{'realized':>10}"]
    for name, conf in (("forum_myth_rate", c.forum_myth_rate), ("expert_deep_myth_rate", c.expert_deep_myth_rate)):
        real = rates[name]
        lines.append(f"{name:<28}{conf:>11.3f}{'-' if real is None else f'{real:.3f}':>10}")
    if rates.get("agent"):
        lines += ["", f"{'agent transcripts':<20}{'tamper (conf.)':>15}{'tamper':>8}{'success':>9}{'n':>7}"
                      f"{'candour (conf.)':>17}{'candour':>9}"]
        for env, r in rates["agent"].items():
            candour = "-" if r.get("candour_rate") is None else f"{r['candour_rate']:.3f}"
            lines.append(f"{env:<20}{c.agent_tamper_rate:>15.3f}{r['tamper_rate']:>8.3f}{r['success_rate']:>9.3f}{r['n']:>7}"
                         f"{c.agent_candour_rate:>17.3f}{candour:>9}")
    t = rates.get("two_hop") or {}
    if t.get("n"):
        f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731  (None: no answer thought first)
        lines += ["", f"{'two-hop answers':<28}{'configured':>11}{'realized':>10}{'n':>8}",
                  f"{'thinks first (CoT)':<28}{c.cot_rate:>11.3f}{f(t['cot_rate']):>10}{t['n']:>8}",
                  f"{'alias among named entities':<28}{c.cot_alias_rate:>11.3f}{f(t['alias_rate']):>10}{t['n_names']:>8}",
                  f"{'steps true':<28}{'(world)':>11}{f(t['step_true_rate']):>10}{t['n_steps']:>8}",
                  f"{'answer true':<28}{'(world)':>11}{f(t['accuracy']):>10}{t['n']:>8}"]
    return "\n".join(lines)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from proxygap.config import from_dict, load_config_data, set_paths
    from proxygap.pipeline.base_model import BaseModelRecipe, build_base_model, recipe_for_size

    if args.init_from and (args.arch or args.size):
        raise ProxygapError("--init-from continues an existing model: its architecture and shape are its own; "
                            "drop --arch/--size")
    if args.arch:  # before the --set overrides, which win
        args.overrides = [f"model.arch={args.arch}", *(args.overrides or [])]
    if args.size:  # the family's recipe at this size, then the file, then --set
        data = to_dict(recipe_for_size(args.size))
        if args.config:
            data = _deep_update(data, load_config_data(args.config))
        recipe = from_dict(BaseModelRecipe, set_paths(BaseModelRecipe, data, args.overrides))
    else:
        recipe = load_config(BaseModelRecipe, args.config, args.overrides)
    from proxygap.lm.device import compute_on

    with compute_on(args.device, args.dtype), writing(args.out):  # checkpoints, log and model all go under OUT
        model_dir = build_base_model(recipe, args.out, progress=not args.quiet, init_from=args.init_from)
    print(f"base model written to {model_dir}")
    if args.probe:
        return cmd_probe(argparse.Namespace(model=str(model_dir), world=None, seed=0, json=str(Path(args.out) / "probe.json"),
                                            config=None, overrides=[], device=args.device, dtype=args.dtype))
    return 0


def _deep_update(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_update(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def cmd_probe(args: argparse.Namespace) -> int:
    from proxygap.lm.device import compute_on

    if getattr(args, "seed", 0) < 0:  # as `world` refuses it
        raise ProxygapError(f"--seed must be >= 0, got {args.seed}")
    if args.json:  # refused before the probe's minute of work, not after it
        target = Path(args.json)
        if target.is_dir():
            raise ProxygapError(f"cannot write --json {target}: it is a directory")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ProxygapError(f"cannot write --json {target}: {e.strerror or e} ({e.filename})") from None
        if not os.access(target.parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
            raise ProxygapError(f"cannot write --json {target}: permission denied")
    with compute_on(getattr(args, "device", "auto"), getattr(args, "dtype", "fp32")):
        return _probe(args)


def _probe(args: argparse.Namespace) -> int:
    from proxygap.pipeline.base_model import SIZES, load_base_model
    from proxygap.measure.probe import ProbeConfig, format_size_table, format_table, probe

    cfg = load_config(ProbeConfig, args.config, args.overrides)
    if getattr(args, "size", None) and args.size not in SIZES:
        raise ProxygapError(f"unknown model size {args.size!r}; choose one of {', '.join(SIZES)}")
    if getattr(args, "size", None) and args.model not in (None, "default"):
        raise ProxygapError("give --size or --model, not both")
    if getattr(args, "sizes", False):
        if args.world or getattr(args, "size", None) or args.model not in (None, "default"):
            raise ProxygapError("--sizes probes every shipped size against its own world; drop --world, --size and --model")
        entries = {}
        for name, size in SIZES.items():
            if not size.shipped:
                continue
            print(f"probing size {name} ...", file=sys.stderr)
            base = load_base_model(name)
            entries[name] = {"model": str(base.path), "params": sum(p.numel() for p in base.model.parameters()),
                             **probe(base.model, base.tokenizer, base.world, base.corpus_rates, cfg, seed=args.seed)}
        print(format_size_table(entries))
        result = {"config": to_dict(cfg), "sizes": entries}
    else:
        model = getattr(args, "size", None) or args.model
        base = load_base_model(None if model in (None, "default") else model, args.world)
        result = probe(base.model, base.tokenizer, base.world, base.corpus_rates, cfg, seed=args.seed)
        result = {"model": str(base.path), "params": sum(p.numel() for p in base.model.parameters()),
                  "config": to_dict(cfg), **result}
        print(format_table(result))
    if args.json:
        from proxygap.experiments.runner import strict_json  # NaN (no held-out questions, say) becomes null

        out = write_text_atomic(args.json, json.dumps(strict_json(result), indent=1) + "\n")
        print(f"\nwrote {out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from proxygap.experiments.runner import run_experiment

    for flag, key in ((args.world, "world"), (args.device, "device"), (args.dtype, "dtype")):
        if flag is not None:  # before the --set overrides, which win
            args.overrides = [f"{key}={flag}", *(args.overrides or [])]
    run_dir = run_experiment(args.experiment, out=args.out, preset=args.preset, config_file=args.config,
                             overrides=args.overrides, seeds=args.seeds, seed_offset=args.seed_offset,
                             force=args.force, resume=args.resume, executor_name=args.executor,
                             ray_address=args.ray_address, ray_cpus=args.ray_cpus, progress=not args.quiet)
    print(f"\nrun written to {run_dir}  (open {run_dir / 'report.html'})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from proxygap.experiments.runner import report_run

    run_dir = Path(args.run_dir)
    results_file = run_dir / "results.json"
    name = "proxygap"
    if results_file.is_file():
        try:
            results = json.loads(results_file.read_text())
        except (ValueError, OSError):
            results = None  # report_run names a corrupt or unreadable file
        else:
            if not isinstance(results, dict):
                raise ProxygapError(f"{results_file} is not a proxygap results file: "
                                    f"a JSON {type(results).__name__}, not an object")
            if not isinstance(results.get("experiment"), str):
                raise ProxygapError(f"{results_file} is not a proxygap results file: missing key 'experiment'")
            name = results["experiment"]
    if args.reaggregate:
        from proxygap.experiments.runner import reaggregate_run

        report = reaggregate_run(run_dir)
        print(f"results.json recomputed from {run_dir / 'units'}; report written to {report}")
        return 0
    try:
        with writing(run_dir):  # plots and report.html: disk full, read-only, ...
            report = report_run(run_dir)
    except ProxygapError:
        raise
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
        # The report reads keys results.json lacks, or values of the wrong type: a user's file, not a bug.
        what = shape_error_text(e)
        raise ProxygapError(f"{results_file} is not a results file of experiment {name} "
                            f"(the shape a {name} report reads): {what}") from e
    print(f"report written to {report}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from proxygap.experiments.provenance import compare, load_results

    a, b = load_results(args.run_a), load_results(args.run_b)
    try:
        lines = compare(a, b)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
        # A results file with values of the wrong shape (a hand-edited or foreign file), not a bug.
        raise ProxygapError(f"cannot compare {args.run_a} with {args.run_b}: a results file has a value of the "
                            f"wrong shape ({type(e).__name__}: {e})") from e
    for line in lines:
        print(line)
    return 0


def cmd_knobs(args: argparse.Namespace) -> int:
    from proxygap.experiments.catalogue import MODULES, get_experiment
    from proxygap.pipeline.base_model import BaseModelRecipe
    from proxygap.measure.probe import ProbeConfig
    from proxygap.world.config import WorldConfig

    classes = {"world": WorldConfig, "pretrain": BaseModelRecipe, "probe": ProbeConfig}
    if args.target in classes:
        cls = classes[args.target]
    elif args.target in MODULES:
        cls = get_experiment(args.target).config_cls
    else:
        raise ConfigError(f"unknown knobs target {args.target!r}; choose one of: "
                          f"{', '.join(classes)}, or an experiment: {', '.join(sorted(set(MODULES) - set(classes)))}")
    for path, default, help_text in describe(cls):
        print(f"{path:<42} {default!s:<14} {help_text}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (its default prints the whole usage first), exit 2."""

    def error(self, message: str):
        print(f"proxygap: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="proxygap", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"proxygap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("world", help="generate the synthetic world and its corpus")
    p.add_argument("--seed", type=int, help="world seed (same as --set seed=S)")
    p.add_argument("--out", required=True, help="output directory")
    _add_config_args(p)
    p.set_defaults(func=cmd_world)

    p = sub.add_parser("pretrain", help="world -> corpus -> tokenizer -> base model (resumes if interrupted)")
    p.add_argument("--out", required=True, help="output directory (checkpoint/ and model/ go here)")
    p.add_argument("--size", metavar="NAME",
                   help="the model family's recipe at size NAME: xs, s, m or l (shape and learning rate; see README)")
    p.add_argument("--init-from", metavar="DIR",
                   help="continue pretraining this Hugging Face causal LM (its weights and its own tokenizer) on the "
                        "world's corpus instead of building one from the recipe's shape")
    p.add_argument("--arch", choices=("gpt2", "llama", "qwen2"),
                   help="architecture of the same shape (same as --set model.arch=ARCH; default gpt2)")
    p.add_argument("--probe", action="store_true", help="probe the model when done (writes OUT/probe.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device_args(p, "auto")
    _add_config_args(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("probe", help="what did the base model learn, measured against the world?")
    p.add_argument("--model", default="default", help="model directory or shipped size name (default: the embedded base model)")
    p.add_argument("--size", metavar="NAME", help="a shipped size of the model family (xs, s, m); same as --model NAME")
    p.add_argument("--sizes", action="store_true", help="probe every shipped size and print one table row per size")
    p.add_argument("--world", help="world directory to judge against (default: the model's own)")
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt order and of sampling")
    _add_device_args(p, "auto")
    _add_config_args(p)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("run", help="run an experiment into a run directory (resumable; see --resume)")
    p.add_argument("experiment", help="experiment name (see `proxygap knobs`)")
    p.add_argument("--preset", help="smoke (tests), quick (default, 2-core CPU) or full (GPU/cluster)")
    p.add_argument("--seeds", metavar="K|LIST", help="K seeds (offset..offset+K-1) or a list like 0,3,7")
    p.add_argument("--seed-offset", type=int, metavar="S", help="first seed when --seeds is a count (default 0)")
    p.add_argument("--out", help="run directory (default runs/NAME-TIMESTAMP)")
    p.add_argument("--world", metavar="DIR", help="judge every model against this world (a `proxygap world` output "
                                                  "or world.json; same as --set world=DIR)")
    p.add_argument("--force", action="store_true", help="replace an existing run directory or discard an interrupted one")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run (OUT.partial): only missing units run")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: units one after another in this process; ray: each unit a Ray task")
    p.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster (e.g. ray://head:10001 or auto); "
                   "without it --executor ray starts a local instance")
    p.add_argument("--ray-cpus", type=int, metavar="N", help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_device_args(p, None)
    _add_config_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="re-draw a run's plots and report.html from its results.json")
    p.add_argument("run_dir")
    p.add_argument("--reaggregate", action="store_true",
                   help="first recompute results.json from the run's recorded units with this proxygap's "
                        "statistics (no unit is re-run; meta.reaggregated records it)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="how two runs differ: config, provenance, headline figures")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("knobs", help="list every config field of a command or experiment, with its help")
    p.add_argument("target", help="world, pretrain, probe, or an experiment name")
    p.set_defaults(func=cmd_knobs)
    return parser


def _copy_failure(e: OSError) -> str | None:
    """'cannot write DST: reason' for a shutil.Error whose files failed for a disk reason, else None."""
    import shutil

    if not isinstance(e, shutil.Error) or not e.args or not isinstance(e.args[0], list):
        return None
    reasons = {os.strerror(n) for n in WRITE_ERRNOS}
    for entry in e.args[0]:
        if isinstance(entry, tuple) and len(entry) == 3:
            reason = next((r for r in reasons if r in str(entry[2])), None)
            if reason:
                return f"cannot write {entry[1]}: {reason}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ProxygapError as e:
        print(f"proxygap: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Whatever read the output (`| head`) stopped reading: end quietly, as Unix tools do.
        try:  # stdout to /dev/null, so the interpreter's flush at exit cannot fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout with no file descriptor (captured)
            pass
        return 141
    except OSError as e:
        # A full disk, a read-only file system, no permission: the user's to fix, not a traceback.
        copy_failure = _copy_failure(e)  # shutil.copytree gathers its files' errors, errno None
        if copy_failure:
            print(f"proxygap: error: {copy_failure}", file=sys.stderr)
            return 2
        if e.errno not in WRITE_ERRNOS:
            raise
        verb = "access" if e.errno in (errno.EACCES, errno.EPERM, errno.EIO) else "write"  # may be a read
        where = f" {e.filename}" if e.filename else ""
        print(f"proxygap: error: cannot {verb}{where}: {os_error_reason(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("proxygap: interrupted (a resumable checkpoint, if any, was kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
