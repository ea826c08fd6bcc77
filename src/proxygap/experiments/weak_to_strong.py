"""`proxygap run weak-to-strong`: which supervisor errors does a stronger student repeat?

Burns et al. (2023) on the model family, with supervisors whose errors are known by construction:

- ``small_gold``: a weak base model with a scalar head fine-tuned on gold labels of half A of the
  training examples; its soft predictions on half B are the student's labels (Burns et al.'s setup);
- ``rater``: the rater's labels of half B, with its named flaws (systematic errors) and label noise;
- ``noise``: gold labels of half B with only random flips (``noise_rate``).

The strong student (a larger base model with a scalar head) is trained on the supervisor's labels
of half B, with plain cross-entropy or with the auxiliary confidence loss; the ceiling is the
same student trained on gold labels of half B. Everything is scored on gold labels of held-out
examples (answers to prompts no training example uses): PGR = (student − weak) / (ceiling −
weak), overall and per error type (``measure.pgr``), where each wrong supervisor label's cause
is a named flaw, noise or the weak model (``oversight.labels``).

Two label tasks: ``correct`` (is this answer good: score > 0) and ``preference`` (which of two
answers is better: the reward-model task). Examples are answers of one sampler (``sampler``) to
the world's assistant prompts. One unit per (task, strong size, seed).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from proxygap.config import ConfigError, knob, nested
from proxygap.experiments.spec import Experiment, ExperimentConfig, Unit, UnitContext
from proxygap.measure.intervals import moved, seed_differences, seed_interval
from proxygap.measure.pgr import accuracy, hard, pgr, pgr_by_error
from proxygap.oversight.judges import Judge, RaterFlaws
from proxygap.train.weak_to_strong import StudentConfig

TASKS = ("correct", "preference")
SUPERVISORS = ("small_gold", "rater", "noise")


@dataclass
class WeakToStrongConfig(ExperimentConfig):
    pairs: tuple[str, ...] = knob(("xs:s", "xs:m", "s:m"), "weak:strong size pairs of the small_gold supervisor "
                                                          "(weak <= strong); the strong sizes are also the students "
                                                          "of the rater and noise supervisors")
    tasks: tuple[str, ...] = knob(TASKS, "label tasks: correct (is the answer good?), preference (which is better?)",
                                  choices=TASKS)
    supervisors: tuple[str, ...] = knob(SUPERVISORS, "small_gold (a weak model fine-tuned on gold), rater (named "
                                                     "flaws + label noise), noise (gold with random flips)",
                                        choices=SUPERVISORS)
    confidence_loss: tuple[bool, ...] = knob((False, True), "train each student without and/or with the auxiliary "
                                                            "confidence loss")
    noise_rate: float = knob(0.2, "flip probability of the noise supervisor", lo=0, hi=0.5)
    sampler: str = knob("s", "the model whose answers are labelled (size name or directory)")
    n_train: int = knob(1200, "training examples, split 50/50: half A trains the small_gold supervisor, half B is "
                              "labelled for the student", lo=8)
    n_test: int = knob(400, "held-out examples every accuracy is measured on (gold labels)", lo=8)
    n_eval_prompts: int = knob(96, "held-out prompts the test examples are drawn from", lo=4)
    prompt_kinds: tuple[str, ...] = knob(("fact", "belief", "recommend"), "assistant question kinds",
                                         choices=("fact", "belief", "recommend"))
    max_new_tokens: int = knob(24, "length limit of the sampled answers", lo=1)
    rater: RaterFlaws = nested(RaterFlaws, "the rater supervisor's flaws and label noise")
    student: StudentConfig = nested(StudentConfig, "the training of every supervisor model, student and ceiling")

    def check(self) -> None:
        super().check()
        for name in ("pairs", "tasks", "supervisors", "confidence_loss"):
            values = getattr(self, name)
            if not values:
                raise ConfigError(f"{name} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ConfigError(f"{name} repeats a value: {list(values)}")
        for pair in self.pairs:
            if pair.count(":") != 1 or not all(pair.split(":")):
                raise ConfigError(f"pairs entry {pair!r} is not 'weak:strong' (e.g. xs:m)")

    @property
    def strong_sizes(self) -> list[str]:
        return list(dict.fromkeys(p.split(":")[1] for p in self.pairs))

    def weak_of(self, strong: str) -> list[str]:
        return [p.split(":")[0] for p in self.pairs if p.split(":")[1] == strong]


def preflight(cfg: WeakToStrongConfig) -> None:
    from proxygap.pipeline.base_model import check_fits, load_world_for_model, parameter_count
    from proxygap.tasks.splits import eval_train_split

    worlds = {}
    for model in dict.fromkeys((cfg.sampler, *(s for p in cfg.pairs for s in p.split(":")))):
        worlds[model] = load_world_for_model(model).to_json()
        check_fits(model, cfg.max_new_tokens)
    if len(set(worlds.values())) > 1:
        raise ConfigError("the sampler and every size must share one world (the shipped sizes do)")
    for pair in cfg.pairs:
        weak, strong = pair.split(":")
        pw, ps = parameter_count(weak), parameter_count(strong)
        if pw is not None and ps is not None and pw > ps:
            raise ConfigError(f"pair {pair!r}: the weak model ({pw} parameters) is larger than the strong one ({ps})")
    eval_train_split(load_world_for_model(cfg.sampler), 0, cfg.prompt_kinds, cfg.n_eval_prompts)


def units(cfg: WeakToStrongConfig) -> list[Unit]:
    return [Unit(f"task={task}-strong={i}-seed={seed}", seed, {"task": task, "strong": strong})
            for task in cfg.tasks for i, strong in enumerate(cfg.strong_sizes) for seed in cfg.seeds]


def examples_for(task: str, sampler, prompts: list[str], n: int, max_new_tokens: int, seed: int) -> list[tuple]:
    """``n`` examples on prompts drawn with replacement: (prompt, answer) or (prompt, a, b)."""
    import torch

    from proxygap.lm.sampling import sample

    chosen = random.Random(f"proxygap-w2s-{task}-{seed}").choices(prompts, k=n)
    k = 1 if task == "correct" else 2
    texts = sample(sampler.model, sampler.tokenizer, [p for p in chosen for _ in range(k)], max_new_tokens,
                   generator=torch.Generator().manual_seed(seed), batch_size=1024).texts
    if task == "correct":
        return list(zip(chosen, texts))
    return list(zip(chosen, texts[0::2], texts[1::2]))


def split_halves(n: int) -> tuple[slice, slice]:
    """Burns et al.'s 50/50 split of the training examples: (half A, half B)."""
    return slice(0, n // 2), slice(n // 2, n)


STUDENT_INIT = 200  # the seed offset of the ceiling's and every student's initialization (weak models: 100 + i)


def run_unit(cfg: WeakToStrongConfig, unit: Unit, ctx: UnitContext) -> dict:
    """One task, strong size and seed: the ceiling, then a student per supervisor and loss."""
    from proxygap.oversight.labels import flip, labels_of, rater_labels
    from proxygap.pipeline.base_model import load_base_model_cached, resolve_model_dir
    from proxygap.tasks.splits import eval_train_split
    from proxygap.train.weak_to_strong import predict, train_student

    seed, task, strong = unit.seed, unit.params["task"], unit.params["strong"]
    sampler = load_base_model_cached(cfg.sampler)
    world = sampler.world
    gold_judge = Judge.gold(world)
    eval_prompts, train_prompts = eval_train_split(world, seed, cfg.prompt_kinds, cfg.n_eval_prompts)
    train = examples_for(task, sampler, train_prompts, cfg.n_train, cfg.max_new_tokens, seed)
    test = examples_for(task, sampler, eval_prompts, cfg.n_test, cfg.max_new_tokens, seed + 10_000)
    half_a, half_b = split_halves(len(train))
    a, b = train[half_a], train[half_b]
    gold_a, gold_b, gold_test = (labels_of(gold_judge, task, x) for x in (a, b, test))
    timings: dict[str, float] = {}
    t0 = time.time()

    def fit(backbone: str, examples: list[tuple], labels: list[float], conf: bool, offset: int):
        return train_student(resolve_model_dir(backbone), task, examples, labels, cfg.student, confidence_loss=conf,
                             seed=seed * 1000 + offset)

    # The ceiling and every student share one initialization and batch order (offset STUDENT_INIT):
    # each differs from the ceiling in its labels alone, and each from the others too.
    ceiling_model = fit(strong, b, gold_b, False, STUDENT_INIT)
    ctx.save_model("ceiling", ceiling_model, ceiling_model.tokenizer, world)
    ceiling_pred = predict(ceiling_model, task, test)
    ceiling_acc = accuracy(ceiling_pred, gold_test)
    timings["ceiling_s"] = round(time.time() - t0, 2)

    # The supervisors: their labels of half B (the student's training labels) and of the test set
    # (their own accuracy there, and the cause of each wrong label).
    supervisors: dict[str, dict] = {}
    if "rater" in cfg.supervisors:
        train_labels, _ = rater_labels(world, cfg.rater, task, b, gold_b, seed)
        test_labels, causes = rater_labels(world, cfg.rater, task, test, gold_test, seed + 10_000)
        supervisors["rater"] = {"weak": "rater", "labels": train_labels, "test": test_labels, "causes": causes}
    if "noise" in cfg.supervisors:
        train_labels, _ = flip(gold_b, cfg.noise_rate, seed)
        test_labels, flipped = flip(gold_test, cfg.noise_rate, seed + 10_000)
        # Which test labels the flip made wrong (a flipped gold tie stays a tie, and is no error).
        causes = ["noise" if f and g != 0.5 else None for f, g in zip(flipped, gold_test)]
        supervisors["noise"] = {"weak": "noise", "labels": train_labels, "test": test_labels, "causes": causes}
    if "small_gold" in cfg.supervisors:
        for i, weak in enumerate(cfg.weak_of(strong)):
            t1 = time.time()
            weak_model = fit(weak, a, gold_a, False, 100 + i)
            test_pred = predict(weak_model, task, test)
            causes = ["weak_model" if g != 0.5 and hard(p) != g else None for p, g in zip(test_pred, gold_test)]
            supervisors[f"small_gold:{weak}"] = {"weak": weak, "labels": predict(weak_model, task, b),
                                                 "test": test_pred, "causes": causes}
            timings[f"weak_{weak}_s"] = round(time.time() - t1, 2)

    students = []
    n_decided = sum(g != 0.5 for g in gold_test)  # the items every accuracy is on (gold ties left out)
    for j, (name, sup) in enumerate(supervisors.items()):
        weak_acc = accuracy(sup["test"], gold_test)
        for conf in cfg.confidence_loss:
            t1 = time.time()
            # The same initialization and batch order with and without the confidence loss: a paired comparison.
            student = fit(strong, b, sup["labels"], conf, STUDENT_INIT)
            label = name if ":" not in name else f"small_gold_{j}"  # a weak model may be a directory path
            ctx.save_model(f"student_{label}{'_conf' if conf else ''}", student, student.tokenizer, world)
            pred = predict(student, task, test)
            acc = accuracy(pred, gold_test)
            students.append({
                "supervisor": name.split(":")[0], "weak": sup["weak"], "strong": strong, "task": task,
                "confidence_loss": conf, "weak_accuracy": weak_acc, "student_accuracy": acc,
                "ceiling_accuracy": ceiling_acc, "pgr": pgr(weak_acc, acc, ceiling_acc, n_decided), "n_items": n_decided,
                "pgr_by_error": pgr_by_error(pred, ceiling_pred, gold_test, sup["causes"]),
                "training_label_accuracy": accuracy(sup["labels"], gold_b),
            })
            timings[f"student_{name}_{'conf' if conf else 'xent'}_s"] = round(time.time() - t1, 2)
    decided = [g for g in gold_test if g != 0.5]
    majority = max(sum(decided), len(decided) - sum(decided)) / len(decided) if decided else None
    return {"students": students, "timings": timings, "n_train_b": len(b), "n_test": len(test),
            "gold_positive_rate": sum(g == 1.0 for g in gold_test) / len(gold_test),
            # The accuracy of always answering the commoner gold label: a student or ceiling at this level
            # learned only the class balance, and its PGR says nothing about what it learned from the labels.
            "majority_accuracy": majority}


def aggregate_units(cfg: WeakToStrongConfig, results: dict[str, dict], prepared: dict | None) -> dict:
    rows: dict[tuple, list[dict]] = {}
    for task in cfg.tasks:
        for i, strong in enumerate(cfg.strong_sizes):
            for seed in cfg.seeds:
                for s in results[f"task={task}-strong={i}-seed={seed}"]["students"]:
                    rows.setdefault((task, s["weak"], strong, s["supervisor"], s["confidence_loss"]), []).append(s)
    pairs = []
    for (task, weak, strong, supervisor, conf), per_seed in rows.items():
        causes = sorted({c for s in per_seed for c in s["pgr_by_error"]})
        # per_seed lists keep None where a seed has no value, so that lists zip seed by seed
        accs = {k: seed_interval([s[k] for s in per_seed], per_seed=True)
                for k in ("weak_accuracy", "student_accuracy", "ceiling_accuracy", "training_label_accuracy")}
        gap = seed_interval(seed_differences(accs["ceiling_accuracy"]["per_seed"], accs["weak_accuracy"]["per_seed"]),
                            per_seed=True)
        pairs.append({
            "task": task, "weak": weak, "strong": strong, "supervisor": supervisor, "confidence_loss": conf,
            # Per seed, then across seeds; seeds where the ceiling does not beat the supervisor beyond the
            # test set's noise have no PGR.
            "pgr": seed_interval([s["pgr"] for s in per_seed], per_seed=True),
            "pgr_undefined_seeds": sum(s["pgr"] is None for s in per_seed),
            "gap": gap,  # ceiling - weak, per seed: what PGR divides by
            "n_items": [s.get("n_items") for s in per_seed],  # per seed, the test items the accuracies are on
            # From the seed-mean accuracies, where the seeds' gap clears 0: steadier than the per-seed ratio.
            "pgr_of_means": pgr(accs["weak_accuracy"]["mean"], accs["student_accuracy"]["mean"],
                                accs["ceiling_accuracy"]["mean"]) if moved(gap) == "up" else None,
            **accs,
            "pgr_by_error": {c: {
                "n": sum(s["pgr_by_error"].get(c, {}).get("n", 0) for s in per_seed),
                **{k: seed_interval([s["pgr_by_error"].get(c, {}).get(k) for s in per_seed], per_seed=True)
                   for k in ("pgr", "student", "ceiling")}} for c in causes},
        })
    timings = {key: r["timings"] for key, r in results.items()}
    majority = {task: seed_interval([results[f"task={task}-strong=0-seed={seed}"]["majority_accuracy"]
                                     for seed in cfg.seeds], per_seed=True) for task in cfg.tasks}
    for p in pairs:
        # Whether the ceiling learned more than the class balance (per-seed paired excess over the majority rate).
        excess = seed_differences(p["ceiling_accuracy"]["per_seed"], majority[p["task"]]["per_seed"])
        p["ceiling_above_majority"] = moved(seed_interval(excess)) == "up"
    result = {"pairs": pairs, "timings": timings, "majority_accuracy": majority}
    result["findings"] = findings(pairs)
    return result


def findings(pairs: list[dict]) -> dict:
    """Per task, pair and supervisor: whether the confidence loss moved the student's accuracy (paired
    per seed: both students share labels, test set, initialization and batch order); and per loss,
    which error types the student repeats more than others, each order claimed only where the
    paired per-seed difference of the two types' PGRs clears 0."""
    from proxygap.measure.intervals import Interval, as_interval

    out = {"confidence_loss": [], "error_types": []}
    index = {(p["task"], p["weak"], p["strong"], p["supervisor"], p["confidence_loss"]): p for p in pairs}
    for (task, weak, strong, sup, conf), p in index.items():
        with_conf = index.get((task, weak, strong, sup, True))
        if not conf and with_conf is not None:
            diff = Interval.from_values(seed_differences(with_conf["student_accuracy"]["per_seed"],
                                                         p["student_accuracy"]["per_seed"]))
            out["confidence_loss"].append({
                "task": task, "weak": weak, "strong": strong, "supervisor": sup,
                "pgr_without": p["pgr_of_means"], "pgr_with": with_conf["pgr_of_means"],
                "accuracy_change": diff.to_dict(),
                "effect": moved(diff) or ("no clear change" if diff.has_spread else "no interval (one seed)")})
        typed = {c: e for c, e in p["pgr_by_error"].items() if e["pgr"]["mean"] is not None and e["n"] >= 10}
        if len(typed) < 2:  # one cause (noise, a weak model): nothing to rank it against
            continue
        ranked = sorted(typed, key=lambda c: typed[c]["pgr"]["mean"])
        orders = []
        for i, lo in enumerate(ranked):
            for hi in ranked[i + 1:]:
                diffs = seed_differences(typed[hi]["pgr"]["per_seed"], typed[lo]["pgr"]["per_seed"])
                change = Interval.from_values(diffs)
                # no order from the seeds where both types have a PGR alone: the others (an unresolved
                # gap, too few items of a type) are not left out at random
                if moved(change) == "up" and None not in diffs:
                    orders.append({"repeated_more": lo, "than": hi, "difference": change.to_dict()})
        below = {c: {o["than"] for o in orders if o["repeated_more"] == c} for c in ranked}  # c repeated more than these
        above = {c: {o["repeated_more"] for o in orders if o["than"] == c} for c in ranked}
        out["error_types"].append({
            "task": task, "weak": weak, "strong": strong, "supervisor": sup, "confidence_loss": conf,
            "pgr_by_type": {c: typed[c]["pgr"] for c in ranked},
            "orders": orders,
            # a type claimed below (above) every other type; None where the seeds do not say
            "most_repeated": next((c for c in ranked if below[c] == set(ranked) - {c}), None),
            "most_corrected": next((c for c in ranked if above[c] == set(ranked) - {c}), None),
            # True / False where the seeds give an interval; None where they do not (one seed, or
            # seeds that agree exactly, e.g. every seed 1.0): no interval, no claim either way.
            # None as well where a seed has no PGR of that type: a claim would rest on the other seeds alone.
            "recovers_above_zero": {c: moved(typed[c]["pgr"]) == "up"
                                    if as_interval(typed[c]["pgr"]).has_spread and None not in typed[c]["pgr"]["per_seed"]
                                    else None for c in ranked}})
    return out


def report(run_dir: Path) -> None:
    from proxygap.report.weak_to_strong import draw_report

    draw_report(run_dir)


EXPERIMENT = Experiment(
    name="weak-to-strong",
    description="PGR when a weak supervisor (small model on gold, flawed rater, noisy gold) trains a stronger student, "
                "per supervisor error type",
    config_cls=WeakToStrongConfig,
    run_unit=run_unit,
    aggregate=aggregate_units,
    units=units,
    preflight=preflight,
    report=report,
    presets={
        "smoke": {"threads": 1, "seeds": [0], "pairs": ["xs:s"], "n_train": 32, "n_test": 16, "n_eval_prompts": 8,
                  "student.epochs": 1, "student.batch_size": 8, "sampler": "xs"},
        # Sized for about 15 minutes on a 2-core CPU: two pairs (the largest gap, xs -> m, is in full), one epoch.
        "quick": {"threads": 2, "pairs": ["xs:s", "s:m"], "n_train": 1200, "n_test": 400, "student.epochs": 1},
        "full": {"seeds": [0, 1, 2, 3, 4], "n_train": 8000, "n_test": 2000, "n_eval_prompts": 192,
                 "student.epochs": 2},
    },
)
