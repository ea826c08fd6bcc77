"""proxygap's judges as TRL reward functions: the README's GRPOTrainer example as written, RLOOTrainer
for two steps, and the unnamed-judge mistake as an error."""

import re
from pathlib import Path

import pytest

pytest.importorskip("trl")

from proxygap.integrations.trl import GoldAndRaterCallback, RewardFunction, prompt_dataset, reward_functions  # noqa: E402
from proxygap.oversight.judges import Judge  # noqa: E402
from proxygap.pipeline.base_model import load_base_model  # noqa: E402
from proxygap.tasks.prompts import assistant_prompts  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    section = README.read_text().split("## proxygap's overseers inside TRL", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_grpo_example_runs_as_written_and_logs_gold_beside_the_optimized_reward(capsys):
    scope: dict = {}
    exec(compile(_readme_example(), "README example", "exec"), scope)
    history = scope["callback"].history
    assert [row["step"] for row in history] == [1, 2]
    for row in history:
        assert row["optimized"] == pytest.approx(row["rater"], abs=1e-5)  # gold has weight 0
        assert "gold" in row
    # Before the first update the policy is the reference: no KL; after it, some.
    assert history[0]["kl_per_sequence"] == 0.0 and history[1]["kl_per_sequence"] > 0


def test_the_callbacks_kl_per_sequence_is_called_exact_only_where_it_is():
    """TRL's logged KL is one batch's token mean only with one micro-batch per step and a log
    every step; then times the mean length it is the mean per-sequence KL, else an approximation."""
    logs = {"reward": 0.5, "kl": 0.2, "completions/mean_length": 4.0}
    state = type("State", (), {"global_step": 7})()
    keys = {}
    for accumulation, every in ((1, 1), (2, 1), (1, 5)):
        callback = GoldAndRaterCallback()
        args = type("Args", (), {"gradient_accumulation_steps": accumulation, "logging_steps": every,
                                 "logging_strategy": "steps", "num_iterations": 1, "steps_per_generation": 1})()
        callback.on_log(args, state, None, logs=logs)
        keys[accumulation, every] = {k: v for k, v in callback.history[0].items() if k.startswith("kl")}
    assert keys == {(1, 1): {"kl_per_sequence": pytest.approx(0.8)}, (2, 1): {"kl_per_sequence_approx": pytest.approx(0.8)},
                    (1, 5): {"kl_per_sequence_approx": pytest.approx(0.8)}}
    from trl import GRPOConfig

    for knobs, exact in (({}, True), ({"num_iterations": 2}, False), ({"steps_per_generation": 2}, False),
                         ({"logging_strategy": "epoch"}, False)):
        config = GRPOConfig(output_dir="/tmp/unused", per_device_train_batch_size=8, num_generations=4,
                            logging_steps=1, report_to=[], use_cpu=True, **knobs)
        callback = GoldAndRaterCallback()
        callback.on_log(config, state, None, logs=logs)
        assert ("kl_per_sequence" in callback.history[0]) is exact, knobs


def test_rloo_trainer_two_steps(tmp_path):
    from trl import RLOOConfig, RLOOTrainer

    base = load_base_model("xs")
    prompts = [p.text for p in assistant_prompts(base.world, seed=0)][:32]
    funcs, weights = reward_functions(optimize={"rater": Judge(base.world)}, log={"gold": Judge.gold(base.world)})
    callback = GoldAndRaterCallback()
    config = RLOOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, num_generations=4,
                        max_completion_length=12, beta=0.05, reward_weights=weights, logging_steps=1, report_to=[],
                        save_strategy="no", use_cpu=True, disable_tqdm=True)
    RLOOTrainer(model=str(base.path), reward_funcs=funcs, args=config,
                train_dataset=prompt_dataset(prompts, base.tokenizer), processing_class=base.tokenizer,
                callbacks=[callback]).train()
    assert len(callback.history) == 2 and all("gold" in r and "rater" in r for r in callback.history)


def test_two_unnamed_judges_are_an_error_and_names_must_be_unique(tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    base = load_base_model("xs")
    config = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=2,
                        report_to=[], use_cpu=True)
    with pytest.raises(TypeError, match="reward_functions"):
        GRPOTrainer(model=str(base.path), reward_funcs=[Judge(base.world), Judge.gold(base.world)], args=config,
                    train_dataset=prompt_dataset(["user : what is the color of x ? assistant :"], base.tokenizer),
                    processing_class=base.tokenizer)
    with pytest.raises(ValueError, match="both optimized and logged"):
        reward_functions(optimize={"gold": Judge(base.world)}, log={"gold": Judge.gold(base.world)})
    # A named function strips the document token TRL's prompts open with, and scores as the judge does.
    rater = Judge(base.world)
    prompt = next(p.text for p in assistant_prompts(base.world, seed=0))
    fn = RewardFunction("rater", rater)
    assert fn([f"<|endoftext|> {prompt}"], ["yes ."]) == pytest.approx(rater([prompt], ["yes ."]))


def test_prompts_lose_the_tokenizers_own_document_token_and_a_self_adding_bos_is_not_doubled():
    base = load_base_model("xs")
    rater = Judge(base.world)
    prompt = next(p.text for p in assistant_prompts(base.world, seed=0))

    class LlamaLike:  # a tokenizer whose BOS is <s> and that adds it itself
        bos_token, eos_token, bos_token_id = "<s>", "</s>", 1

        def __call__(self, text):
            return {"input_ids": [1, 5]}

    fn = RewardFunction("rater", rater, LlamaLike())
    assert fn([f"<s> {prompt}"], ["yes ."]) == pytest.approx(rater([prompt], ["yes ."]))
    assert prompt_dataset([prompt], LlamaLike())["prompt"] == [prompt]  # TRL's tokenizer call adds the BOS
    assert prompt_dataset([prompt], base.tokenizer)["prompt"] == [f"<|endoftext|> {prompt}"]
