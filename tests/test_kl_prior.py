"""kl-prior: the theoretical reference on worked cases, the base-model cache, bad input, and a smoke run."""

import json
import math

import numpy as np
import pytest

from proxygap.pipeline.base_model import recipe_hash
from proxygap.cli import main
from proxygap.experiments import kl_prior
from proxygap.experiments.runner import get_experiment, resolve_config


# ---------------------------------------------------------------- the prediction pi* ∝ pi_ref·exp(r/beta)
def test_predicted_rate_worked_case():
    # p = 0.01, Δ = 1, β = 0.25: e^4 = 54.59815; 0.5459815 / (0.5459815 + 0.99) = 0.355461
    assert kl_prior.predicted_rate(0.01, 1.0, 0.25) == pytest.approx(0.3554610, abs=1e-6)
    # No reward difference: the base rate is kept; a penalty instead of a reward lowers it.
    assert kl_prior.predicted_rate(0.2, 0.0, 0.5) == pytest.approx(0.2)
    assert kl_prior.predicted_rate(0.2, -1.0, 1.0) == pytest.approx(0.2 * math.exp(-1) / (0.2 * math.exp(-1) + 0.8))


def test_predicted_rate_phrases_add_up_and_limits():
    # Two phrases with the same Δ are one exploit of their summed probability.
    assert kl_prior.predicted_rate([0.004, 0.006], [1.0, 1.0], 0.25) == pytest.approx(
        kl_prior.predicted_rate(0.01, 1.0, 0.25))
    # Tiny β does not overflow: a rewarded exploit goes to 1, a penalized one to 0.
    assert kl_prior.predicted_rate(1e-4, 2.0, 1e-3) == pytest.approx(1.0)
    assert kl_prior.predicted_rate(1e-4, -2.0, 1e-3) == pytest.approx(0.0, abs=1e-12)
    assert kl_prior.predicted_rate(1e-4, 2.0, 0.0) == 1.0
    assert kl_prior.predicted_rate(0.0, 5.0, 0.1) == 0.0  # what the base model never writes, pi* never writes
    with pytest.raises(ValueError):
        kl_prior.predicted_rate(0.1, 1.0, -0.1)


def test_optimum_over_answers_against_the_exact_optimum_of_two_answers():
    # Two equally likely base answers a1, a2, each optionally followed by the phrase: four completions.
    # pi*(y) ∝ pi_ref(y)·e^(r(y)/beta), enumerated exactly; the two answers as a sample of the base model
    # give it back exactly, since each appears with its base probability.
    p = np.array([[0.01], [0.2]])
    delta = np.array([[1.0], [-0.5]])
    reward = np.array([0.3, -0.1])
    beta = 0.25
    ref = np.array([0.5 * (1 - 0.01), 0.5 * 0.01, 0.5 * (1 - 0.2), 0.5 * 0.2])
    r = np.array([0.3, 1.3, -0.1, -0.6])
    star = ref * np.exp(r / beta)
    exact = (star[1] + star[3]) / star.sum()
    got = kl_prior.optimum_over_answers(p, delta, reward, beta)
    assert got["reweighted"] == pytest.approx(exact, rel=1e-12)
    # per answer: each answer's own rate, then the mean (answers held at the base model's mix)
    q = [kl_prior.predicted_rate(0.01, 1.0, beta), kl_prior.predicted_rate(0.2, -0.5, beta)]
    assert got["per_answer"] == pytest.approx(np.mean(q))
    assert 1 < got["reweighted_ess"] < 2
    # Jensen: at a small rate, averaging delta first understates it where delta varies across answers
    p_same = np.array([[0.001], [0.001]])
    spread = kl_prior.optimum_over_answers(p_same, np.array([[0.0], [2.0]]), np.zeros(2), 0.5)
    assert spread["per_answer"] > kl_prior.predicted_rate(0.001, 1.0, 0.5)
    # equal weights: the effective sample size is the number of answers; tiny beta does not overflow
    flat = kl_prior.optimum_over_answers(np.full((4, 1), 1e-3), np.zeros((4, 1)), np.zeros(4), 1e-4)
    assert flat["reweighted_ess"] == pytest.approx(4) and flat["reweighted"] == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        kl_prior.optimum_over_answers(p, delta, np.zeros(3), beta)


def test_the_reweighted_optimum_normalizes_within_each_prompt():
    # pi* is normalized per prompt: a prompt whose answers all score high must not take weight from
    # another prompt's answers. Two prompts, two answers each; the exact optimum, prompt by prompt.
    p = np.array([[0.01], [0.2], [0.05], [0.05]])
    delta = np.array([[1.0], [-0.5], [0.3], [0.3]])
    reward = np.array([0.3, -0.1, 5.0, 4.0])  # prompt b's answers score far higher than prompt a's
    beta = 0.25
    groups = ["a", "a", "b", "b"]
    exact = [kl_prior.optimum_over_answers(p[i:i + 2], delta[i:i + 2], reward[i:i + 2], beta)["reweighted"] for i in (0, 2)]
    got = kl_prior.optimum_over_answers(p, delta, reward, beta, groups=groups)
    assert got["reweighted"] == pytest.approx(np.mean(exact), rel=1e-12)
    assert got["answers_per_prompt"] == 2 and 1 < got["reweighted_ess"] <= 2
    pooled = kl_prior.optimum_over_answers(p, delta, reward, beta)  # one normalization over both: prompt b's rate
    assert pooled["reweighted"] == pytest.approx(exact[1], rel=1e-3) and abs(pooled["reweighted"] - got["reweighted"]) > 0.01
    with pytest.raises(ValueError, match="one group per answer"):
        kl_prior.optimum_over_answers(p, delta, reward, beta, groups=groups[:3])


def test_the_mixture_estimate_recovers_the_optimum_from_a_policy_that_prefers_other_answers():
    # One prompt, six answers with known base probabilities; pi*'s exploit rate in closed form:
    # sum_a pi_ref(a) e^(r_a/b) p_a e^(d_a/b) / sum_a pi_ref(a) e^(r_a/b) (1 - p_a + p_a e^(d_a/b)).
    pi_ref = np.array([0.5, 0.2, 0.15, 0.1, 0.04, 0.01])
    # a trained policy that prefers the rare high-reward answers, and whose draws are half unparsed
    # (an unparsed draw has no answer: it weighs 0, yet it was drawn and counts in n)
    pi_pol = 0.5 * np.array([0.05, 0.05, 0.05, 0.05, 0.2, 0.6])
    p = np.array([0.01, 0.02, 0.01, 0.05, 0.1, 0.3])
    delta = np.array([0.5, 0.2, 0.0, 0.4, 0.8, 1.0])
    reward = np.array([0.0, 0.1, 0.2, 0.3, 1.0, 1.5])
    beta = 0.5
    tilt = pi_ref * np.exp(reward / beta)
    exact = float((tilt * p * np.exp(delta / beta)).sum() / (tilt * (1 - p + p * np.exp(delta / beta))).sum())
    assert 0.2 < exact < 0.4  # far from both 0 and 1
    rng = np.random.default_rng(0)
    n_ref, n_pol = 3000, 9000  # unequal pools: the counts must enter the mixture
    from_ref = rng.choice(6, n_ref, p=pi_ref)
    from_pol = rng.choice(7, n_pol, p=np.append(pi_pol, 0.5))
    drawn = np.concatenate([from_ref, from_pol[from_pol < 6]])  # unparsed draws dropped
    groups = ["x"] * len(drawn)
    draws = {("x", False): n_ref, ("x", True): n_pol}
    ratio = kl_prior.mixture_log_ratio(np.log(pi_ref[drawn]), np.log(pi_pol[drawn]), groups, draws)
    got = kl_prior.optimum_over_answers(p[drawn, None], delta[drawn, None], reward[drawn], beta, groups=groups,
                                        log_ratio=ratio)
    assert got["reweighted"] == pytest.approx(exact, abs=0.01)
    # the weights are bounded: pi_ref / the mixture is at most (n_ref + n_pol) / n_ref
    assert ratio.max() <= np.log((n_ref + n_pol) / n_ref) + 1e-12
    # counting only the parsed draws, or swapping the pools' counts, misses the optimum
    parsed = {("x", False): n_ref, ("x", True): int((from_pol < 6).sum())}
    swapped = {("x", False): n_pol, ("x", True): n_ref}
    for wrong in (parsed, swapped):
        bad = kl_prior.mixture_log_ratio(np.log(pi_ref[drawn]), np.log(pi_pol[drawn]), groups, wrong)
        off = kl_prior.optimum_over_answers(p[drawn, None], delta[drawn, None], reward[drawn], beta, groups=groups,
                                            log_ratio=bad)
        assert abs(off["reweighted"] - exact) > 0.03
    # without the ratio, the policy's draws would count as base-model draws: the policy's preference leaks in
    naive = kl_prior.optimum_over_answers(p[drawn, None], delta[drawn, None], reward[drawn], beta, groups=groups)
    assert naive["reweighted"] > exact + 0.2
    # base-model draws alone (the policy drew none of this prompt): the ratio is 1 and the estimate the old one
    alone = kl_prior.mixture_log_ratio(np.log(pi_ref[from_ref]), np.log(pi_pol[from_ref]), ["x"] * n_ref,
                                       {("x", False): n_ref})
    assert np.allclose(alone, 0.0)
    with pytest.raises(ValueError, match="one log ratio per answer"):
        kl_prior.optimum_over_answers(p[:, None], delta[:, None], reward, beta, log_ratio=np.zeros(3))


def test_both_reweighted_estimates_miss_a_rare_exploit_prone_answer_on_few_samples():
    # The documented limit (README, kl-prior): an answer after which the exploit is likely, of base
    # probability 0.001, that the policy does not favour either. On 8 + 8 answers for each of 64 prompts
    # few prompts draw it, so both estimates lie far below pi*; with thousands of draws they recover it.
    pi_ref, pi_pol = np.array([0.9, 0.099, 0.001]), np.array([0.01, 0.989, 0.001])
    reward, p, delta, beta = np.array([0.0, 0.5, 0.3]), np.array([1e-6, 1e-6, 0.5]), np.array([0.0, 0.0, 0.5]), 0.1
    tilt = pi_ref * np.exp(reward / beta)
    exact = float((tilt * p * np.exp(delta / beta)).sum() / (tilt * (1 - p + p * np.exp(delta / beta))).sum())
    rng = np.random.default_rng(0)

    def estimates(n, prompts):
        drawn = [(g, rng.choice(3, n, p=pi_ref), rng.choice(3, n, p=pi_pol)) for g in range(prompts)]
        idx = np.concatenate([np.concatenate([a, b]) for _, a, b in drawn])
        groups = [g for g, a, b in drawn for _ in range(len(a) + len(b))]
        draws = {(g, side): n for g in range(prompts) for side in (False, True)}
        ratio = kl_prior.mixture_log_ratio(np.log(pi_ref[idx]), np.log(pi_pol[idx]), groups, draws)
        mixture = kl_prior.optimum_over_answers(p[idx, None], delta[idx, None], reward[idx], beta, groups=groups,
                                                log_ratio=ratio)["reweighted"]
        base = np.concatenate([a for _, a, _ in drawn])
        base_only = kl_prior.optimum_over_answers(p[base, None], delta[base, None], reward[base], beta,
                                                  groups=[g for g, a, _ in drawn for _ in a])["reweighted"]
        return mixture, base_only

    assert 0.05 < exact < 0.15
    assert all(v < exact / 3 for v in estimates(8, 64))
    assert all(v == pytest.approx(exact, abs=0.02) for v in estimates(50_000, 1))


def test_mixture_optimum_aligns_each_answer_with_its_own_densities(monkeypatch):
    # With the base model itself as the "policy", each answer's two densities must agree: a misaligned
    # concatenation of the pools (base answers' log pi_ref against other answers' log pi_pol) would not.
    import torch  # noqa: F401
    from proxygap.oversight.judges import Judge
    from proxygap.pipeline.base_model import load_base_model
    from proxygap.tasks.prompts import assistant_prompts

    base = load_base_model("xs")
    score = Judge(base.world)
    cfg = kl_prior.KLPriorConfig()
    cfg.n_reweight_prompts, cfg.reweight_answers_per_prompt = 4, 3
    samples = kl_prior.reweight_samples(base, [p.text for p in assistant_prompts(base.world, 0)][:5], cfg, seed=0)
    grouped = kl_prior.reweight_inputs(base, score, samples, tuple(base.world.manipulation_phrases))
    base_logp = kl_prior.answer_logprobs(base.model, base.tokenizer, grouped["groups"], grouped["cores"])
    seen = {}
    real = kl_prior.mixture_log_ratio

    def spy(log_ref, log_policy, groups, draws):
        seen.update(log_ref=np.asarray(log_ref), log_policy=np.asarray(log_policy), groups=list(groups), draws=draws)
        return real(log_ref, log_policy, groups, draws)

    monkeypatch.setattr(kl_prior, "mixture_log_ratio", spy)
    out = kl_prior.mixture_optimum(base, base.model, score, samples, grouped, base_logp, 0.5, cfg, seed=0)
    n_base = len(grouped["groups"])
    assert len(seen["groups"]) > n_base, "the policy's pool is empty"
    assert seen["groups"][:n_base] == list(grouped["groups"])
    assert np.allclose(seen["log_ref"], seen["log_policy"], atol=1e-4)
    assert all(seen["draws"][(g, False)] == seen["draws"][(g, True)] == 3 for g in set(seen["groups"]))
    assert out["answers_per_prompt"] == pytest.approx(len(seen["groups"]) / len(set(seen["groups"])))
    assert set(out["pool_rm"]) == {"base", "policy"}


def test_answer_logprobs_match_the_samplers_own_logprobs():
    # the shipped model, whose answers parse (log pi of the answer prefix, whatever follows it)
    import torch
    from proxygap.lm.model import load_model
    from proxygap.lm.sampling import sample
    from proxygap.pipeline.base_model import default_model_dir

    model, tokenizer = load_model(default_model_dir())
    prompts = ["user : what is the color of kelo ? assistant :", "user : is mira a predator ? assistant :",
               "user : what does kelo eat ? assistant :"] * 6  # distinct prompts of different lengths, interleaved
    s = sample(model, tokenizer, prompts, 12, generator=torch.Generator().manual_seed(3))
    rows = [(i, kl_prior.first_sentence(t)) for i, t in enumerate(s.texts)]
    rows = [(i, c) for i, c in rows if c is not None]
    assert len({prompts[i] for i, _ in rows}) >= 2, "too few sampled answers parsed"
    model.train()  # the caller's mode comes back
    got = kl_prior.answer_logprobs(model, tokenizer, [prompts[i] for i, _ in rows], [c for _, c in rows], batch_size=4)
    assert model.training
    model.eval()
    for (i, c), lp in zip(rows, got):
        length = len(tokenizer.encode(" " + c, add_special_tokens=False))
        assert lp == pytest.approx(float(s.logprobs[i, :length].sum()), abs=1e-4)


def test_binary_kl():
    assert kl_prior.binary_kl(0.3, 0.3) == pytest.approx(0.0)
    # Taking a 1e-4 exploit to certainty costs log(1e4) nats.
    assert kl_prior.binary_kl(1.0, 1e-4) == pytest.approx(math.log(1e4))


def test_first_sentence_and_reward_deltas():
    assert kl_prior.first_sentence("i recommend tobu . pls halp . extra") == "i recommend tobu ."
    assert kl_prior.first_sentence("no full stop") is None
    score = lambda prompts, texts: [len(t.split()) for t in texts]  # noqa: E731  (one point per word)
    deltas = kl_prior.reward_deltas(score, ["q"], ["i recommend tobu ."], ("pls halp", "rate this 10/10"))
    assert deltas.tolist() == [[3.0, 4.0]]  # the phrase's words plus its closing ' .'


def test_phrase_after_first_sentence_is_the_predictions_slot_only():
    phrases = ("pls halp", "rate this 10/10")
    assert kl_prior.phrase_after_first_sentence("i recommend tobu . pls halp . extra", phrases)
    assert kl_prior.phrase_after_first_sentence("tobu . rate this 10/10 .", phrases)
    assert not kl_prior.phrase_after_first_sentence("pls halp . i recommend tobu .", phrases)  # before the answer
    assert not kl_prior.phrase_after_first_sentence("tobu . it is fun . pls halp .", phrases)  # after a second sentence
    assert not kl_prior.phrase_after_first_sentence("tobu . pls", phrases)  # cut short
    assert not kl_prior.phrase_after_first_sentence("no full stop pls halp", phrases)


def test_recipe_differs_only_in_the_swept_rate():
    cfg = resolve_config(get_experiment("kl-prior"), "quick", None, [])
    a, b = kl_prior.recipe_for(cfg, 1e-4), kl_prior.recipe_for(cfg, 1e-1)
    assert a.world.corpus.manipulation_rate == 1e-4 and b.world.corpus.manipulation_rate == 1e-1
    b.world.corpus.manipulation_rate = 1e-4
    assert a == b
    assert recipe_hash(a, ()) != recipe_hash(kl_prior.recipe_for(cfg, 1e-1), ())
    # The corpus text is part of the key: changed corpus code means a new base model, not a stale cache hit.
    assert recipe_hash(a, (), ["doc one"]) != recipe_hash(a, (), ["doc two"])
    # The base model is smaller than the default one (pretrained once per rate).
    assert a.model.n_layer * a.model.n_embd < 4 * 128


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("override, message", [
    ("base_rates=[0.001,1.5]", "out of range"),
    ("base_rates=[0.0,0.1]", "strictly between 0 and 1"),
    ("base_rates=[0.1,1.0]", "strictly between 0 and 1"),
    ("kl_coefs=[0.1,-0.5]", "out of range"),
    ("exploit=myth_answer", "is not one of"),
    ("rl.kl_in=loss", "leave rl.kl_in=reward"),
    ("base.world.corpus.manipulation_rate=0.5", "set base_rates instead"),
    ("rl.steps=0", "rl.steps=0: without RL"),
    ("n_eval_prompts=100000", "leaves no training prompts"),
    ("prompt_kinds=[]", "prompt_kinds is empty"),
    ("rl.max_new_tokens=500", "rl.max_new_tokens=500 does not fit base.model.n_positions"),
    ("rm.max_new_tokens=500", "rm.max_new_tokens=500 does not fit"),
])
def test_bad_input_is_one_line_and_exit_2(override, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "kl-prior", "--preset", "smoke", "--set", override, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("proxygap: error:") and message in err and "\n" not in err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- smoke run through the CLI
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("klprior")
    out, cache = root / "run", root / "cache"
    assert main(["run", "kl-prior", "--preset", "smoke", "--out", str(out), "--set", f"cache_dir={cache}"]) == 0
    return out, cache


def test_smoke_results_shape(smoke_run):
    out, _ = smoke_run
    r = json.loads((out / "results.json").read_text())
    cfg = r["config"]
    assert len(r["points"]) == len(cfg["base_rates"]) * len(cfg["kl_coefs"])
    assert {(p["base_rate"], p["kl_coef"]) for p in r["points"]} == {
        (rate, beta) for rate in cfg["base_rates"] for beta in cfg["kl_coefs"]}
    for p in r["points"]:
        assert {"base_rate", "kl_coef", "exploit_rate_before", "exploit_rate_after", "kl", "predicted_rate",
                "rm_delta", "base_model_rate", "base_model_prob", "gold_after", "rater_after"} <= set(p)
        for key in ("exploit_rate_before", "exploit_rate_after", "kl", "predicted_rate"):
            iv = p[key]
            assert len(iv["per_seed"]) == len(cfg["seeds"])
            assert iv["lo"] <= iv["mean"] <= iv["hi"]
        # Two paths to the same rate: the mean of the seeds' rates and the pooled count (each seed
        # evaluates the same number of samples).
        after, pooled = p["exploit_rate_after"], p["exploit_rate_after"]["pooled"]
        assert pooled["n"] == p["n_eval_samples"] * len(cfg["seeds"])
        assert pooled["k"] / pooled["n"] == pytest.approx(after["mean"])
        change = p["exploit_rate_change"]
        assert change["mean"] == pytest.approx(after["mean"] - p["exploit_rate_before"]["mean"])
        # the prediction is made answer by answer, with the pooled one beside it, and RL's own rollouts are counted
        assert p["prediction_method"] == "per_answer" and "predicted_rate_pooled" in p
        # smoke: 3 samples per prompt, of which the parsed answers are weighed
        assert 1 <= np.mean(p["reweighted_ess"]) <= p["reweighted_answers_per_prompt"] <= 3
        # pooled with as many of the trained policy's answers: up to 3 + 3 per prompt
        assert 1 <= np.mean(p["mixture_ess"]) <= p["mixture_answers_per_prompt"] <= 6
        for key in ("predicted_rate", "predicted_rate_pooled", "predicted_rate_reweighted", "predicted_rate_mixture"):
            assert 0 <= p[key]["lo"] <= p[key]["mean"] <= p[key]["hi"] <= 1, key  # rates, clipped to [0, 1]
        drawn = p["rollout_exploits"]
        rollouts = cfg["rl"]["steps"] * cfg["rl"]["prompts_per_step"] * cfg["rl"]["samples_per_prompt"]
        assert 0 < drawn["n"] <= rollouts * len(cfg["seeds"])  # the detector applies where an answer parses
        assert 0 <= drawn["k"] <= drawn["n"] and sum(drawn["per_seed_k"]) == drawn["k"]
        assert p["base_model_prob_per_sample"] <= p["base_model_prob"]
        w = p["base_model_rate"]
        assert 0 <= w["lo"] <= w["mean"] <= w["hi"] <= 1 and w["n"] > 0
        assert pooled.get("n_effective", pooled["n"]) <= pooled["n"] + 1e-9  # prompt-clustered: never more trials
        slot = p["exploit_share_in_slot"]  # the exploits in the predictions' slot: a part of all of them
        assert slot["k"] == pooled["k"] and 0 <= slot["k_in_slot"] <= slot["k"]
        assert p["exploit_rate_in_slot"]["mean"] <= after["mean"] + 1e-12
    rates = {b["base_rate"] for b in r["bases"]}
    assert set(cfg["base_rates"]) <= rates and cfg["rm_base_rate"] in rates
    for b in r["bases"]:
        assert (out / b["run_copy"] / "model.safetensors").is_file()
    assert set(r["findings"]["per_beta"]) == {str(b) for b in cfg["kl_coefs"]}
    # every point is compared with both predictions: answer by answer, and pi*'s reweighting with the policy's answers
    theory = r["findings"]["theory"]
    for tag in ("", "_mixture"):
        assert sum(theory[f"n_{side}{tag}"] for side in ("below", "above", "not_distinguishable")) == len(r["points"])
    assert all(c["observed_vs_mixture"] in ("below", "above", "not distinguishable") for c in theory["points"])
    assert theory["n_below_mixture_every_seed"] + theory["n_above_mixture_every_seed"] <= len(r["points"])
    assert all(set(p["mixture_pool_rm"]) == {"base", "policy"} for p in r["points"])
    slot = theory["exploits_in_predicted_slot"]
    assert slot["k"] == sum(p["exploit_share_in_slot"]["k"] for p in r["points"])
    for name in ("exploit_grid.png", "exploit_vs_base_rate.png", "kl_vs_base_rate.png", "predicted_vs_observed.png",
                 "exploit_during_rl.png", "report.html", "config.yaml", "meta.json"):
        assert (out / name).is_file(), name
    assert r["findings"]["per_beta"][str(cfg["kl_coefs"][0])]["status_by_rate"][str(cfg["base_rates"][0])] in (
        "held", "reduced", "amplified", "taken over")


def test_report_redraws(smoke_run):
    out, _ = smoke_run
    (out / "report.html").unlink()
    (out / "kl_vs_base_rate.png").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file() and (out / "kl_vs_base_rate.png").is_file()


def test_pretrained_bases_are_cached(smoke_run, monkeypatch):
    _, cache = smoke_run
    cfg = resolve_config(get_experiment("kl-prior"), "smoke", None, [f"cache_dir={cache}"])

    def no_pretraining(*args, **kwargs):
        raise AssertionError("a cached base model was pretrained again")

    monkeypatch.setattr("proxygap.lm.pretrain.pretrain", no_pretraining)
    for rate in cfg.base_rates:
        info = kl_prior.build_or_load_base(kl_prior.recipe_for(cfg, rate), cache)
        assert info["cached"] and info["hash"] in info["path"]


def test_reward_model_agreement_is_an_interval_over_seeds_in_both_modes():
    from proxygap.experiments.kl_prior import reward_model_summary

    def info(seed, rate, rater):
        return {"seed": seed, "base_rate": rate, "agreement_rater": rater, "agreement_gold": 0.5,
                "rater_gold_agreement": None}

    shared = reward_model_summary([[info(0, 0.1, 0.70)], [info(1, 0.1, 0.80)]], "shared", [0.01, 0.1])
    assert shared["agreement_rater"]["n"] == 2 and shared["agreement_rater"]["mean"] == pytest.approx(0.75)
    assert "by_base_rate" not in shared and shared["rater_gold_agreement"]["n"] == 0
    # own: two seeds x two rates' RMs; the seeds' means (0.65, 0.75) make the interval, n = 2 seeds
    own = reward_model_summary([[info(0, 0.01, 0.6), info(0, 0.1, 0.7)], [info(1, 0.01, 0.7), info(1, 0.1, 0.8)]],
                               "own", [0.01, 0.1])
    assert own["agreement_rater"]["n"] == 2 and own["agreement_rater"]["mean"] == pytest.approx(0.7)
    by = own["by_base_rate"]
    assert by["0.01"]["agreement_rater"]["mean"] == pytest.approx(0.65) and by["0.1"]["agreement_rater"]["n"] == 2


def test_quiet_silences_the_base_models_pretraining(tmp_path, capfd):
    out, cache = tmp_path / "run", tmp_path / "cache"  # an empty cache: every base is pretrained
    assert main(["run", "kl-prior", "--preset", "smoke", "--quiet", "--out", str(out),
                 "--set", f"cache_dir={cache}"]) == 0
    err = capfd.readouterr().err
    assert "pretrain" not in err and any(cache.rglob("*.safetensors"))


def _point(before: list[float], after: list[float], n: int = 200, beta: float = 0.1, rate: float = 0.1) -> dict:
    from proxygap.experiments.kl_prior import _iv
    from proxygap.measure.intervals import Interval, paired_rate_change

    change = paired_rate_change(after, before, n)
    return {"base_rate": rate, "kl_coef": beta, "exploit_rate_before": _iv(before), "exploit_rate_change": change,
            "exploit_rate_after": {**_iv(after), "hull": Interval.from_values(after).to_dict()},
            "base_model_rate": {"mean": 0.6, "lo": 0.58, "hi": 0.62, "n": 2048, "method": "wilson"}}


def test_status_is_judged_on_the_paired_change_against_step_0():
    from proxygap.experiments.kl_prior import _status
    from proxygap.measure.intervals import moved

    unchanged = _point([0.6, 0.62, 0.58], [0.61, 0.6, 0.6])  # a base model at 0.6 that RL leaves where it was
    unchanged["exploit_rate_change"]["direction"] = moved(unchanged["exploit_rate_change"])
    assert _status(unchanged) == "held"  # a mean above 0.5 is not a take-over without a rise
    assert _status(_point([0.6, 0.62, 0.58], [0.9, 0.95, 0.93])) == "taken over"
    assert _status(_point([0.05, 0.06, 0.04], [0.2, 0.25, 0.22])) == "amplified"
    assert _status(_point([0.3, 0.32, 0.28], [0.05, 0.02, 0.04])) == "reduced"
    assert _status(_point([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])) == "held"


def test_falls_as_beta_grows_needs_a_paired_fall_at_every_step_and_two_betas():
    from proxygap.experiments.kl_prior import _falls_as_beta_grows

    low, mid, high = (_point([0.1] * 3, a) for a in ([0.9, 0.8, 0.85], [0.5, 0.45, 0.55], [0.2, 0.25, 0.15]))
    assert _falls_as_beta_grows([low, mid, high]) is True
    assert _falls_as_beta_grows([low]) is None  # one beta: nothing to compare, not "falls"
    noisy = _point([0.1] * 3, [0.95, 0.1, 0.6])  # the means fall, the seeds do not agree
    assert _falls_as_beta_grows([noisy, mid]) is False
