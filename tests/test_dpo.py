"""DPO and IPO: the losses against hand-computed values and against TRL's DPOTrainer on the same batch,
and a few steps of training moving the policy toward the chosen answers."""

import tempfile

import numpy as np
import pytest
import torch

from proxygap.train.dpo import DPOConfig, dpo_loss, implicit_reward_agreement, pair_logps, train_dpo

PAIRS = [("user : what is the color of kelo ? assistant :", "the color of kelo is red .", "i am not sure ."),
         ("user : what is the diet of mira ? assistant :", "the diet of mira is fish .",
          "the diet of mira is definitely seeds .")]


def test_dpo_and_ipo_losses_match_hand_computed_values():
    c, r, rc, rr = (torch.tensor([x]) for x in (-2.0, -3.0, -2.5, -2.5))
    # h = (-2 + 2.5) - (-3 + 2.5) = 1; -log sigmoid(0.5 * 1) = 0.474077
    assert dpo_loss(c, r, rc, rr, beta=0.5).item() == pytest.approx(0.474077, abs=1e-6)
    # IPO: 0.5 / 2 tokens - (-0.5) / 4 tokens = 0.375; (0.375 - 1 / (2 * 0.5))^2 = 0.390625
    got = dpo_loss(c, r, rc, rr, 0.5, "ipo", torch.tensor([2.0]), torch.tensor([4.0]))
    assert got.item() == pytest.approx(0.390625, abs=1e-6)
    with pytest.raises(ValueError, match="token counts"):
        dpo_loss(c, r, rc, rr, 0.5, "ipo")


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_losses_match_trl_dpotrainer_on_the_same_batch(loss_type):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig as TRLConfig, DPOTrainer

    from proxygap.pipeline.base_model import resolve_model_dir

    path = resolve_model_dir("xs")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():  # a policy that differs from its reference, so the loss is not its value at 0
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    data = Dataset.from_dict({"prompt": [f"{tok.bos_token} {p}" for p, _, _ in PAIRS],
                              "chosen": [f" {c}" for _, c, _ in PAIRS], "rejected": [f" {r}" for _, _, r in PAIRS]})
    with tempfile.TemporaryDirectory() as out:
        args = TRLConfig(output_dir=out, per_device_train_batch_size=2, beta=0.1, loss_type=[loss_type], report_to=[],
                         use_cpu=True, bf16=False)
        trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tok)
        batch = next(iter(trainer.get_train_dataloader()))
        model.eval()
        theirs = trainer.compute_loss(model, batch).item()
    c, r, lc, lr = pair_logps(model, tok, PAIRS)
    with torch.no_grad():
        rc, rr, _, _ = pair_logps(ref, tok, PAIRS)
    assert dpo_loss(c, r, rc, rr, 0.1, loss_type, lc, lr).mean().item() == pytest.approx(theirs, rel=1e-5)


def test_dpo_raises_the_chosen_answers_likelihood_ratio():
    from proxygap.pipeline.base_model import load_base_model

    base = load_base_model("xs")
    cfg = DPOConfig(steps=6, batch_size=2, lr=1e-3, eval_every=6, eval_samples_per_prompt=1, max_new_tokens=8)
    score = lambda p, c: [0.0] * len(c)  # noqa: E731
    policy, evals = train_dpo(base.model, base.tokenizer, PAIRS, [PAIRS[0][0]], score, {"rater": score, "gold": score},
                              cfg, beta=0.1, loss_type="sigmoid", seed=0, progress=False)
    with torch.no_grad():
        c, r, _, _ = pair_logps(policy, base.tokenizer, PAIRS)
        rc, rr, _, _ = pair_logps(base.model, base.tokenizer, PAIRS)
    assert ((c - rc) - (r - rr) > 0).all()
    assert [e.step for e in evals] == [0, 6]


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_the_trained_policy_read_as_a_reward_model_orders_pairs_as_its_labels(loss_type):
    from proxygap.pipeline.base_model import load_base_model

    base = load_base_model("xs")
    cfg = DPOConfig(steps=6, batch_size=2, lr=1e-3, eval_every=6, eval_samples_per_prompt=1, max_new_tokens=8)
    score = lambda p, c: [0.0] * len(c)  # noqa: E731
    policy, _ = train_dpo(base.model, base.tokenizer, PAIRS, [PAIRS[0][0]], score, {"rater": score, "gold": score},
                          cfg, beta=0.1, loss_type=loss_type, seed=0, progress=False)
    prompts, chosen, rejected = (list(x) for x in zip(*PAIRS))
    # a as chosen, b as rejected for the first pair, swapped for the second; a judge that agrees, one that
    # disagrees, one that ties everything.
    a, b = [chosen[0], rejected[1]], [rejected[0], chosen[1]]
    judged = {"agrees": (np.array([1.0, 0.0]), np.array([0.0, 1.0])),
              "disagrees": (np.array([0.0, 1.0]), np.array([1.0, 0.0])), "ties": (np.zeros(2), np.zeros(2))}
    got = implicit_reward_agreement(policy, base.model, base.tokenizer, prompts, a, b, judged,
                                    length_normalized=loss_type == "ipo", chunk=1)
    assert got == {"agrees": 1.0, "disagrees": 0.0, "ties": None}
    # The reference read the same way has no preference at all: no pair ordered.
    same = implicit_reward_agreement(base.model, base.model, base.tokenizer, prompts, a, b, judged,
                                     length_normalized=False)
    assert same["agrees"] == 0.0 and same["ties"] is None
