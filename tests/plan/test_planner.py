"""The intent planner: sensible plans across task × level × data size × hardware × model, a reason in
both languages for every setting, the user's own values kept, and the rules file checked."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import pytest
import yaml

from easytune.i18n import UserError, catalog, t
from easytune.models.catalog import get_entry
from easytune.plan.planner import (
    INTENTS_PATH,
    LEVELS,
    TASKS,
    IntentsError,
    choices,
    load_intents,
    propose,
    validate_intents,
)
from easytune.plan.schema import TrainingPlan, plan_fields

ROOT = Path(__file__).resolve().parents[2]
TINY_DIR = ROOT / "assets" / "tiny-model"
GIB = 1024**3


# ---------------------------------------------------------------------------------------------
# inputs, shaped like ModelInfo.to_dict(), a catalog entry, ImportReport.to_dict(), Hardware.to_dict()


def _tiny_by_hand() -> dict:
    """The built-in model's numbers (Llama, 4 layers, width 128), as the inspector reports them."""
    return {
        "path": None, "architecture": "LlamaForCausalLM", "model_type": "llama", "num_parameters": 1_144_576,
        "num_layers": 4, "hidden_size": 128, "intermediate_size": 344, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 3_269, "tie_word_embeddings": True,
        "context_length": 512, "dtype": "float32", "quantization": None, "size_on_disk": 4_791_746,
        "has_chat_template": True, "needs_remote_code": False, "gated_mlp": True, "qk_norm": False,
        "linear_modules": {"attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
                           "attention_qkv": ["q_proj", "k_proj", "v_proj"], "attention_output": ["o_proj"],
                           "feed_forward": ["gate_proj", "up_proj", "down_proj"], "other": []},
        "first_block": [],
    }


@pytest.fixture(scope="module")
def tiny() -> dict:
    if (TINY_DIR / "config.json").is_file():
        from easytune.models.inspect import inspect_model

        return inspect_model(TINY_DIR).to_dict()
    return _tiny_by_hand()


SEVEN_B = get_entry("qwen2.5-7b-instruct").to_dict()  # catalog shape: params_b, context_length, shape


def model_info(name: str, tiny: dict) -> dict:
    return tiny if name == "tiny" else SEVEN_B


HARDWARE = {
    "cpu16": {"cuda": [], "mps": False, "xpu": [], "cpu_physical": 8, "cpu_logical": 16,
              "ram_total": 16 * GIB, "ram_available": 14 * GIB, "disk_free": 200 * GIB},
    "gpu24": {"cuda": [{"index": 0, "name": "24 GB GPU", "total_memory": 24 * GIB, "bf16": True,
                        "compute_capability": "8.9"}], "mps": False, "xpu": [], "cpu_physical": 8,
              "cpu_logical": 16, "ram_total": 64 * GIB, "ram_available": 56 * GIB, "disk_free": 500 * GIB},
    "gpu80": {"cuda": [{"index": 0, "name": "80 GB GPU", "total_memory": 80 * GIB, "bf16": True,
                        "compute_capability": "9.0"}], "mps": False, "xpu": [], "cpu_physical": 32,
              "cpu_logical": 64, "ram_total": 512 * GIB, "ram_available": 480 * GIB, "disk_free": 2000 * GIB},
}

SIZES = (40, 5_000, 200_000)
KIND_FOR = {"preference": "preference", "pretrain": "text"}
SHAPE_FOR = {"sft": "openai", "preference": "preference", "kto": "kto", "text": "text"}


def stats(rows: int, kind: str = "sft", *, p90: int = 180, p99: int = 300, top: int | None = None,
          estimated: bool = True, val: int = 0, latin_pct: float | None = None) -> dict:
    """The parts of ImportReport.to_dict() the planner reads."""
    top = top or p99 * 2
    long = max(1, rows // 100)
    return {
        "source": "data.jsonl", "shape": SHAPE_FOR[kind], "kinds": {kind: rows}, "rows_total": rows,
        "rows_usable": rows, "rows_rejected": 0, "splits": {"train": rows - val, "val": val},
        "val_ratio": val / rows if val else 0.0,
        "quality": {"tokens": {"p50": p90 // 2, "p90": p90, "p99": p99, "max": top, "mean": p90 * 0.6,
                               "estimated": estimated,
                               "histogram": [{"lo": 64, "hi": 128, "count": rows - 9 * long},
                                             {"lo": 128, "hi": 256, "count": 8 * long},
                                             {"lo": 256, "hi": 512, "count": long}]},
                    **({"languages": {"en": {"pct": latin_pct}, "zh": {"pct": 100 - latin_pct}}}
                       if latin_pct is not None else {})},
    }


def every_field_explained(proposal) -> None:
    names = [f.name for f in plan_fields()]
    assert list(proposal.reasons) == names
    for lang in ("zh", "en"):
        rendered = proposal.to_dict(lang)
        for name in names:
            text = rendered["reasons"][name]["text"]
            assert text.strip() and "{" not in text, (name, lang, text)
        for warning in rendered["warnings"]:
            assert warning["text"].strip() and "{" not in warning["text"], warning
    TrainingPlan.from_yaml(proposal.plan.to_yaml())  # the plan is valid and round-trips


# ---------------------------------------------------------------------------------------------
# the table: every combination gets a complete, explained, sensible plan

CASES = list(itertools.product(TASKS, LEVELS, SIZES, HARDWARE, ("tiny", "7b")))


@pytest.mark.parametrize("task,level,rows,hw,model", CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_table(task, level, rows, hw, model, tiny):
    info = model_info(model, tiny)
    p = propose(model=model, dataset="data", task=task, level=level, model_info=info,
                data_stats=stats(rows, KIND_FOR.get(task, "sft")), hardware=HARDWARE[hw])
    plan = p.plan
    every_field_explained(p)
    assert p.user_set == []

    # the adapter follows the level
    if plan.method == "lora":
        low, high = load_intents().levels[level].r_range
        assert low // 2 <= plan.lora_r <= high and plan.lora_alpha == 2 * plan.lora_r
    if level == "L1" and task != "pretrain":  # a toy model learns nothing through q/k/v alone
        assert plan.method == "lora" and plan.lora_r <= 8
        assert plan.target_modules == ("all_linear" if model == "tiny" else "attention_qkv")
    if level in ("L2", "L3"):
        assert plan.target_modules == "all_linear"

    # epochs by data size
    assert plan.epochs <= 2 if rows >= 200_000 else True
    if rows == 40:
        assert plan.val_ratio > 0 and plan.lora_dropout >= (0.05 if model == "tiny" else 0.1)
        assert plan.epochs >= (2 if task in ("preference", "pretrain") else 5)  # their own ceiling
        assert any(w["key"] == "planner.warn.tiny_data" for w in p.warnings)

    # learning rate: scaled up for the tiny model, the usual band for 7B
    if model == "7b":
        assert plan.method == "lora"  # never full for a 7B model
        if task == "domain":  # facts need steps several times the usual (presets/intents.yaml, tasks.domain)
            assert 2.5e-4 <= plan.learning_rate <= 1e-3
        elif task != "preference":
            assert 5e-5 <= plan.learning_rate <= 2e-4
        else:
            assert plan.learning_rate < 5e-5
    elif task != "preference" and plan.method == "lora":
        assert 1e-3 <= plan.learning_rate <= 5e-3

    # full fine-tuning only for small models, deep changes and enough data
    if plan.method == "full":
        assert model == "tiny" and level == "L3" and rows >= 5_000
        assert plan.learning_rate < 1e-3 and plan.weight_decay > 0
        assert plan.precision == ("auto" if hw == "cpu16" else "fp32")  # fp32 weights: no lost updates

    # length from the data, capped by the model's context
    context = info.get("context_length")
    assert plan.max_seq_len % load_intents().seq_len.round_to == 0 and plan.max_seq_len <= context
    # batch from memory; each update sees the effective batch of the data size
    assert plan.batch_size * plan.grad_accum >= min(8, rows)
    if hw == "cpu16":
        assert plan.batch_size <= 8

    est = p.estimates
    assert est["steps"] >= 1 and est["minutes"] > 0 and est["disk_bytes"] > 0
    assert est["memory_bytes"] > 0 and est["memory_status"] in ("fits", "tight", "does_not_fit")
    if model == "tiny" or hw == "gpu80":
        assert est["memory_status"] == "fits"
    if model == "7b" and hw == "cpu16":
        assert est["memory_status"] == "does_not_fit"
        assert any(w["key"] == "planner.warn.memory_does_not_fit" for w in p.warnings)

    # the objective follows the data, and every kind of data here can be trained
    assert plan.objective == {"preference": "dpo", "pretrain": "pretrain"}.get(task, "sft")
    assert {w.get("method_needed") for w in p.warnings} - {None} == set()
    assert plan.num_processes == 1 and plan.method != "qlora"
    if plan.grad_checkpointing:  # only where one row does not fit without it
        assert plan.batch_size == 1 and model == "7b" and hw != "gpu80"
        assert p.reasons["grad_checkpointing"]["key"] == "planner.reason.ckpt_memory"

    # forgetting: general text mixed in where the change reaches the model's knowledge
    assert plan.retention_ratio == (0.5 if task == "domain" else 0.3 if task == "pretrain" or plan.method == "full"
                                    or (task != "preference" and (model == "tiny" or level != "L1")) else 0.0)
    assert plan.forgetting_guard is (model == "7b")  # the 1M model always forgets: warn, don't stop
    if plan.retention_ratio:
        assert est["train_examples"] > est["train_rows"]


# ---------------------------------------------------------------------------------------------
# specific rules


def test_tiny_demo_is_close_to_the_tested_preset(tiny):
    """62 demo rows on the tiny model, at every level: the demo preset's tested settings (all linear layers,
    5e-3, about 16 epochs, 30 % general text, the last weights delivered), which make the tiny model repeat
    the FAQ (presets/intents.yaml, small_model); the light-touch L1 rules alone teach it nothing."""
    demo = TrainingPlan.load(ROOT / "presets" / "demo.yaml")
    for level in LEVELS:
        p = propose(model="easytune-tiny", dataset="demo:shop_faq_zh", task="chat", level=level, model_info=tiny,
                    data_stats=stats(62, p90=60, p99=90), hardware=HARDWARE["cpu16"])
        assert p.plan.learning_rate == demo.learning_rate and p.plan.target_modules == "all_linear"
        assert demo.epochs - 1 <= p.plan.epochs <= demo.epochs
        assert p.plan.batch_size * p.plan.grad_accum == demo.batch_size
        assert p.plan.max_seq_len <= demo.max_seq_len
        assert p.plan.retention_ratio == demo.retention_ratio and p.plan.forgetting_guard is demo.forgetting_guard
        assert p.plan.keep_best is demo.keep_best and p.reasons["keep_best"]["key"] == "planner.reason.keep_best_few"
        assert p.reasons["learning_rate"]["key"] == "planner.reason.lr_small_model_fixed"
        assert p.estimates["minutes"] < 5


def test_learning_rate_scales_with_parameter_count_not_name(tiny):
    rates = []
    for params in (1e6, 2e7, 1e8, 5e8, 7e9):
        info = {**tiny, "num_parameters": int(params)}
        rates.append(propose(model="my-model", dataset="d", task="chat", level="L2", model_info=info,
                             data_stats=stats(5_000)).plan.learning_rate)
    assert rates == sorted(rates, reverse=True)
    assert rates[-1] == rates[-2] == 1e-4 and rates[1] == 5e-4  # 1e-4 x sqrt(5e8 / 2e7)
    assert rates[0] == 5e-3  # a toy-sized model: the small_model rule's tested rate


def test_full_fine_tuning_of_a_half_billion_model_needs_room():
    half = get_entry("qwen2.5-0.5b-instruct").to_dict()
    big = propose(model="m", dataset="d", task="chat", level="L3", model_info=half, data_stats=stats(20_000),
                  hardware=HARDWARE["gpu80"])
    assert big.plan.method == "full" and big.plan.precision == "fp32"
    assert 1e-5 <= big.plan.learning_rate <= 2e-5
    small = propose(model="m", dataset="d", task="chat", level="L3", model_info=half, data_stats=stats(20_000),
                    hardware={**HARDWARE["gpu24"], "cuda": [{**HARDWARE["gpu24"]["cuda"][0],
                                                             "total_memory": 8 * GIB}]})
    assert small.plan.method == "lora" and small.reasons["method"]["key"] == "planner.reason.method_lora_memory"
    style = propose(model="m", dataset="d", task="style", level="L3", model_info=half, data_stats=stats(20_000),
                    hardware=HARDWARE["gpu80"])
    assert style.plan.method == "lora"


def test_raw_text_is_split_into_pieces_not_cut():
    data = stats(2_000, "text", p90=3_000, p99=9_000, top=20_000)
    data["quality"]["tokens"]["mean"] = 2_048
    p = propose(model="m", dataset="d", task="pretrain", level="L2", model_info=SEVEN_B, data_stats=data,
                hardware=HARDWARE["gpu80"])
    assert p.plan.max_seq_len == 1_024 and p.reasons["max_seq_len"]["key"] == "planner.reason.seq_chunks"
    # two pieces a row on average, then 3 general rows for every 7 of yours
    assert p.estimates["train_examples"] == round(1_800 * 2 / 0.7)
    assert p.intent["method_needed"] is None


def test_a_new_plan_setting_gets_its_default_and_a_reason(tiny, monkeypatch):
    from easytune.plan import planner

    real = planner.decide_schedule

    def forget_seed(ctx, draft):
        real(ctx, draft)
        del draft.values["seed"], draft.reasons["seed"]

    monkeypatch.setattr(planner, "decide_schedule", forget_seed)
    p = propose(model="m", dataset="d", task="chat", level="L2", model_info=tiny)
    assert p.plan.seed == TrainingPlan().seed and p.reasons["seed"]["key"] == "planner.reason.default"
    every_field_explained(p)


def test_long_tail_is_cut_unless_the_task_keeps_long_rows(tiny):
    data = stats(5_000, p90=300, p99=2_000, top=6_000)
    info = {**SEVEN_B, "context_length": 32_768}
    chat = propose(model="m", dataset="d", task="chat", level="L2", model_info=info, data_stats=data,
                   hardware=HARDWARE["gpu80"])
    assert chat.reasons["max_seq_len"]["key"].startswith("planner.reason.seq_long_tail")
    assert chat.plan.max_seq_len < 2_000
    extraction = propose(model="m", dataset="d", task="extraction", level="L2", model_info=info, data_stats=data,
                         hardware=HARDWARE["gpu80"])
    assert extraction.plan.max_seq_len >= 2_000


def test_length_is_capped_by_the_model_context(tiny):
    p = propose(model="m", dataset="d", task="chat", level="L2", model_info=tiny,
                data_stats=stats(5_000, p90=900, p99=1_200, estimated=False))
    assert p.plan.max_seq_len == tiny["context_length"]
    assert p.reasons["max_seq_len"]["key"] == "planner.reason.seq_capped"


def test_long_rows_on_a_small_gpu_are_shortened_to_fit():
    data = stats(5_000, p90=6_000, p99=7_800, top=8_000)
    p = propose(model="m", dataset="d", task="extraction", level="L3", model_info=SEVEN_B, data_stats=data,
                hardware=HARDWARE["gpu24"])
    assert p.plan.batch_size == 1 and p.plan.max_seq_len < 7_800
    assert p.reasons["max_seq_len"]["key"] == "planner.reason.seq_memory"
    assert p.estimates["memory_status"] in ("fits", "tight")


def test_imported_validation_split_is_respected(tiny):
    p = propose(model="m", dataset="d", task="chat", level="L2", model_info=tiny, data_stats=stats(5_000, val=500))
    assert p.reasons["val_ratio"]["key"] == "planner.reason.val_import"
    assert p.estimates["train_rows"] == 4_500 and p.estimates["val_rows"] == 500


def test_domain_at_level_one_is_planned_with_a_warning(tiny):
    p = propose(model="m", dataset="d", task="domain", level="L1", model_info={**tiny, "num_parameters": int(1e8)},
                data_stats=stats(5_000))
    assert p.plan.target_modules == "attention_qkv"
    assert [w["params"]["suggested"] for w in p.warnings if w["key"] == "planner.warn.level_low"] == ["L2"]


def test_domain_knowledge_trains_with_noise_on_the_embeddings_and_chat_without(tiny):
    domain = propose(model="m", dataset="d", task="domain", level="L2", model_info=tiny, data_stats=stats(40))
    assert domain.plan.embedding_noise == load_intents().tasks["domain"].embedding_noise > 0
    assert domain.reasons["embedding_noise"]["key"] == "planner.reason.embedding_noise_task"
    chat = propose(model="m", dataset="d", task="chat", level="L2", model_info=tiny, data_stats=stats(40))
    assert chat.plan.embedding_noise == 0
    assert chat.reasons["embedding_noise"]["key"] == "planner.reason.embedding_noise_off"


def test_every_layer_gets_the_adapter_and_the_upper_half_alone_is_planned_as_faster(tiny):
    info = {**tiny, "num_parameters": int(1.35e8)}
    every = propose(model="m", dataset="d", task="domain", level="L2", model_info=info, data_stats=stats(400),
                    hardware=HARDWARE["cpu16"])
    assert every.plan.lora_layers == 1 and every.reasons["lora_layers"]["key"] == "planner.reason.lora_layers_all"
    half = propose(model="m", dataset="d", task="domain", level="L2", model_info=info, data_stats=stats(400),
                   hardware=HARDWARE["cpu16"], overrides={"lora_layers": 0.5})
    assert half.plan.lora_layers == 0.5 and half.estimates["steps"] == every.estimates["steps"]
    # the backward pass through half the blocks: between two thirds and all of the time, half the adapter's size
    assert 0.6 * every.estimates["minutes"] < half.estimates["minutes"] < every.estimates["minutes"]
    assert half.estimates["disk_bytes"] < every.estimates["disk_bytes"]


@pytest.mark.parametrize("rows,latin_pct,copies", [(40, 100.0, 2), (40, 5.0, 0), (5_000, 100.0, 0)])
def test_domain_knowledge_copies_the_questions_of_a_few_spaced_rows_and_trains_fewer_passes(rows, latin_pct,
                                                                                             copies, tiny):
    info = {**tiny, "num_parameters": int(1.35e8)}
    p = propose(model="m", dataset="d", task="domain", level="L2", model_info=info,
                data_stats=stats(rows, latin_pct=latin_pct))
    plain = propose(model="m", dataset="d", task="domain", level="L2", model_info=info,
                    data_stats=stats(rows, latin_pct=latin_pct), overrides={"question_variants": 0})
    assert p.plan.question_variants == copies
    assert p.reasons["question_variants"]["key"] == {
        2: "planner.reason.question_variants_task", 0: "planner.reason.question_variants_many_rows"
        if rows > 100 else "planner.reason.question_variants_unspaced"}[copies]
    if copies:  # every pass shows each fact three times: fewer passes, more steps, general text as before
        assert p.plan.epochs == plain.plan.epochs * load_intents().tasks["domain"].variant_epochs_factor < 8
        assert p.reasons["epochs"]["key"] == "planner.reason.epochs_question_variants"
        assert p.estimates["steps"] > plain.estimates["steps"]
    else:
        assert p.plan.epochs == plain.plan.epochs


def test_the_run_counts_the_extra_copies_of_answers_asked_one_way_only(tiny):
    """Answers no second question asks get twice the copies (jobs/question_variants.py): a plan for 40 rows whose
    40 answers are each asked once trains longer than one for 40 rows asking 20 answers two ways each."""
    info = {**tiny, "num_parameters": int(1.35e8)}

    def plan(one_way: int):
        data = stats(40, latin_pct=100.0)
        data["quality"]["ways_asked"] = {"answers": 40 - (40 - one_way) // 2, "one_way": one_way}
        return propose(model="m", dataset="d", task="domain", level="L2", model_info=info, data_stats=data,
                       hardware=HARDWARE["cpu16"])

    two_ways, one_way = plan(0), plan(40)
    assert one_way.plan.question_variants == two_ways.plan.question_variants == 2
    # for each row trained on (the rest held out), every answer asked one way: two more copies, and general text
    # for the second question they stand in for (retention 50 %: one row)
    assert one_way.estimates["train_examples"] == two_ways.estimates["train_examples"] + 3 * one_way.estimates[
        "train_rows"]
    assert one_way.estimates["minutes"] > two_ways.estimates["minutes"]


@pytest.mark.parametrize("latin_pct,per_char,warned", [(5.0, 1.9, True), (5.0, 1.0, False), (100.0, 1.9, False),
                                                        (5.0, None, False)])
def test_chinese_data_on_a_model_that_read_little_chinese_is_warned_about(latin_pct, per_char, warned, tiny):
    """The tokenizer's cost of a Chinese character tells a model that read Chinese (the built-in one: 1.0) from
    one that did not (SmolLM2: 1.9, tests/models/test_gguf_import.py); the plan says so before any training."""
    p = propose(model="m", dataset="d", task="domain", level="L2", model_info={**tiny, "zh_tokens_per_char": per_char},
                data_stats=stats(40, latin_pct=latin_pct))
    found = [w for w in p.warnings if w["key"] == "planner.warn.model_reads_little_chinese"]
    assert bool(found) == warned, p.warnings
    if warned:
        assert found[0]["params"] == {"model": "m", "tokens": "1.9"}
        assert "1.9" in p.to_dict("zh")["warnings"][0]["text"]  # the first thing the plan says


def test_the_built_in_model_reads_chinese(tiny):
    if not (TINY_DIR / "config.json").is_file():
        pytest.skip("the built-in model is not built")
    assert tiny["zh_tokens_per_char"] <= 1.1  # its tokenizer was built from the demo's Chinese and English


def test_kto_data_trains_with_kto_and_its_beta_is_explained(tiny):
    p = propose(model="m", dataset="d", task="preference", level="L2", model_info=tiny,
                data_stats=stats(500, "kto"))
    assert p.plan.objective == "kto" and p.method_needed is None
    assert p.reasons["objective"]["key"] == "planner.reason.objective_kto"
    assert p.reasons["dpo_beta"]["key"] == "planner.reason.kto_beta"
    assert "planner.warn.method_needed" not in {w["key"] for w in p.warnings}


def test_measured_speed_replaces_the_estimate(tiny):
    args = {"model": "m", "dataset": "d", "task": "chat", "level": "L2", "model_info": tiny,
            "data_stats": stats(5_000), "hardware": HARDWARE["cpu16"]}
    guessed = propose(**args)
    measured = propose(**args, tokens_per_s=100.0)
    assert guessed.estimates["time_source"] == "estimated" and measured.estimates["time_source"] == "measured"
    tokens = measured.estimates["steps"] * measured.estimates["tokens_per_step"]
    assert measured.estimates["minutes"] >= tokens / 100 / 60


def test_a_step_counts_the_models_own_chat_template_and_packed_rows_unpadded(tiny):
    """A chat model's template is part of every row (SmolLM2's default system prompt makes it 32 tokens): the
    longest rows and a step's tokens count it, where the model's folder says how long it is; packed rows
    are computed as they are, not padded to the longest beside them."""
    short = stats(40, p90=30, p99=40)  # a short FAQ, as the import estimated it
    args = {"model": "m", "dataset": "d", "task": "domain", "level": "L2", "data_stats": short,
            "hardware": HARDWARE["cpu16"]}
    unknown = propose(**args, model_info={**tiny, "template_tokens": None})
    chat = propose(**args, model_info={**tiny, "template_tokens": 32})
    assert (unknown.plan.max_seq_len, chat.plan.max_seq_len) == (64, 80)  # (40 + 16 | 32) x 1.1, rounded up
    assert chat.estimates["tokens_per_step"] == chat.estimates["effective_batch"] * (30 * 0.6 + 32)  # the mean
    unpacked = propose(**{**args, "overrides": {"packing": False}}, model_info={**tiny, "template_tokens": 32})
    assert unpacked.estimates["tokens_per_step"] == unpacked.estimates["effective_batch"] * (30 + 32)  # p90


def test_missing_inputs_fall_back_and_say_so():
    p = propose(model="easytune-tiny", dataset="demo:shop_faq_zh", task="chat", level="L2")
    every_field_explained(p)
    keys = {w["key"] for w in p.warnings}
    assert {"planner.warn.no_model_info", "planner.warn.no_data_stats", "planner.warn.no_hardware"} <= keys
    assert p.reasons["model"]["key"] == "planner.reason.model_unknown"
    assert p.reasons["epochs"]["key"] == "planner.reason.epochs_unknown"
    assert p.estimates["minutes"] is None and p.plan.device == "auto"


def test_objects_are_accepted_as_well_as_dicts(tiny, tmp_path):
    from easytune.data.ingest import import_file
    from easytune.models.hardware import GpuInfo, Hardware

    report = import_file(ROOT / "assets" / "demo" / "shop_faq_en.jsonl", out_dir=tmp_path / "ds")
    hw = Hardware(cuda=[GpuInfo(index=0, name="GPU", total_memory=24 * GIB, bf16=True)], cpu_logical=8,
                  ram_total=32 * GIB, ram_available=24 * GIB, disk_free=100 * GIB)
    a = propose(model="m", dataset="d", task="chat", level="L1", model_info=tiny, data_stats=report, hardware=hw)
    b = propose(model="m", dataset="d", task="chat", level="L1", model_info=tiny, data_stats=report.to_dict(),
                hardware=hw.to_dict())
    assert a.plan == b.plan
    assert a.estimates["train_rows"] == report.splits["train"]
    every_field_explained(a)


# ---------------------------------------------------------------------------------------------
# the user's own values


def test_user_values_are_kept_and_flagged_outside_the_recommended_range(tiny):
    overrides = {"learning_rate": 0.05, "lora_r": 64, "target_modules": "attention", "seed": 7}
    p = propose(model="m", dataset="d", task="style", level="L1", model_info=tiny, data_stats=stats(5_000),
                hardware=HARDWARE["cpu16"], overrides=overrides)
    for key, value in overrides.items():
        assert getattr(p.plan, key) == value
        assert p.reasons[key]["key"] == "planner.reason.user_set"
    assert p.user_set == ["lora_r", "target_modules", "learning_rate", "seed"]
    flagged = {w["field"] for w in p.warnings if "field" in w}
    assert flagged == {"learning_rate", "lora_r", "target_modules"}
    assert p.plan.lora_alpha == 128  # planned around the user's rank
    every_field_explained(p)


def test_user_batch_is_kept_and_accumulation_follows(tiny):
    p = propose(model="m", dataset="d", task="chat", level="L2", model_info=tiny, data_stats=stats(5_000),
                hardware=HARDWARE["cpu16"], overrides={"batch_size": 2})
    assert p.plan.batch_size == 2 and p.plan.grad_accum == 16
    assert "batch_size" in p.user_set and not [w for w in p.warnings if w.get("field") == "batch_size"]


def test_user_full_fine_tune_of_a_large_model_is_kept_and_warned():
    p = propose(model="m", dataset="d", task="chat", level="L3", model_info=SEVEN_B, data_stats=stats(5_000),
                hardware=HARDWARE["cpu16"], overrides={"method": "full"})
    assert p.plan.method == "full"
    keys = [w["key"] for w in p.warnings]
    assert "planner.warn.not_recommended" in keys and "planner.warn.memory_does_not_fit" in keys


@pytest.mark.parametrize("overrides,key", [({"learning_rte": 1e-4}, "plan.unknown_key"),
                                           ({"lora_r": 0}, "plan.out_of_range"),
                                           ({"scheduler": "step"}, "plan.bad_choice")])
def test_bad_user_values_are_refused_like_a_plan_file(overrides, key):
    with pytest.raises(UserError) as err:
        propose(model="m", dataset="d", task="chat", level="L2", overrides=overrides)
    assert err.value.key == key


# ---------------------------------------------------------------------------------------------
# errors the user can fix


@pytest.mark.parametrize("task,kind,key", [
    ("preference", "sft", "planner.error.needs_preference_data"),
    ("pretrain", "sft", "planner.error.needs_raw_text"),
    ("chat", "preference", "planner.error.sft_got_preference"),
    ("domain", "text", "planner.error.sft_got_text"),
])
def test_task_and_data_mismatch(task, kind, key, tiny):
    with pytest.raises(UserError) as err:
        propose(model="m", dataset="d", task=task, level="L2", model_info=tiny, data_stats=stats(100, kind))
    assert err.value.key == key
    assert err.value.message("zh") != err.value.message("en")


def test_mixed_data_uses_the_fitting_rows(tiny):
    data = stats(1_000)
    data["kinds"] = {"sft": 900, "preference": 100}
    p = propose(model="m", dataset="d", task="chat", level="L2", model_info=tiny, data_stats=data)
    assert p.estimates["train_rows"] == 810
    assert any(w["key"] == "planner.warn.mixed_data" and w["params"]["rows"] == 100 for w in p.warnings)


@pytest.mark.parametrize("task,level,key", [("chat", "L4", "planner.error.unknown_level"),
                                            ("translate", "L1", "planner.error.unknown_task")])
def test_unknown_task_or_level(task, level, key):
    with pytest.raises(UserError) as err:
        propose(model="m", dataset="d", task=task, level=level)
    assert err.value.key == key and err.value.message("zh")


def test_level_spellings():
    assert propose(model="m", dataset="d", task="Chat", level="l3").intent["level"] == "L3"
    assert propose(model="m", dataset="d", task="chat", level=2).intent["level"] == "L2"


# ---------------------------------------------------------------------------------------------
# the rules file and the messages


def test_intents_yaml_passes_its_schema():
    rules = validate_intents(yaml.safe_load(INTENTS_PATH.read_text(encoding="utf-8")))
    assert set(rules.levels) == set(LEVELS) and set(rules.tasks) == set(TASKS)
    assert rules.levels["L1"].target_modules == "attention_qkv"
    assert load_intents() == rules


@pytest.mark.parametrize("path,value", [
    (("levels", "L1", "r_range"), [8, 4]),               # not [lower, upper]
    (("levels", "L1", "learning_rate"), 1e-3),           # outside its own lr_range
    (("levels", "L1", "lora_r"), 8),                     # the rank is r_range's, not a second number
    (("levels", "L2", "target_modules"), "mlp"),
    (("tasks", "chat", "needs"), ["conversations"]),
    (("tasks", "style", "lr_facter"), 1.0),
    (("data_size", 0, "max_rows"), 10**9),              # not increasing
    (("model_size", "max_factor"), "20"),
    (("memory", "micro_batch_cap"), {"cpu": 8}),
])
def test_broken_intents_are_refused(path, value):
    data = copy.deepcopy(yaml.safe_load(INTENTS_PATH.read_text(encoding="utf-8")))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(IntentsError):
        validate_intents(data)


def test_choices_and_their_labels_exist_in_both_languages():
    menu = choices()
    assert [c["id"] for c in menu["tasks"]] == ["auto", *TASKS]  # auto: picked from the data
    for item in menu["tasks"] + menu["levels"]:
        for lang in ("zh", "en"):
            assert t(item["label"], lang) and t(item["help"], lang)
    for lang in ("zh", "en"):
        for f in plan_fields():
            assert catalog(lang)[f"planner.field_name.{f.name}"]


def test_reason_texts_are_one_plain_sentence():
    for lang in ("zh", "en"):
        for key, text in catalog(lang).items():
            if key.startswith(("planner.reason.", "planner.warn.")):
                body = text.rstrip("。.")
                assert "。" not in body and not any(s in body for s in (". ", "! ", "? ")), (key, text)
                assert len(text) <= 200, key


def test_estimates_are_consistent(tiny):
    p = propose(model="m", dataset="d", task="chat", level="L2", model_info=tiny, data_stats=stats(5_000),
                hardware=HARDWARE["gpu24"])
    est = p.estimates
    assert est["steps"] == math.ceil(p.plan.epochs * est["steps_per_epoch"])
    assert est["effective_batch"] == p.plan.batch_size * p.plan.grad_accum
    assert est["disk_bytes"] < 100 * 1024**2  # an adapter for a tiny model: megabytes


def _gpus(gib: int, count: int = 1, four_bit: bool = True) -> dict:
    gpu = {"name": f"{gib} GB GPU", "total_memory": gib * GIB, "bf16": True, "compute_capability": "8.9"}
    return {**HARDWARE["gpu24"], "cuda": [{**gpu, "index": i} for i in range(count)], "four_bit": four_bit}


def test_memory_picks_4_bit_then_checkpointing_each_explained():
    """A 7B model in bf16 does not fit a 16 GB GPU even for one row: QLoRA where bitsandbytes can run it,
    LoRA with the install hint where it cannot. Long rows on 40 GB: checkpointing before cutting rows."""
    q = propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(5_000),
                hardware=_gpus(16))
    assert q.plan.method == "qlora" and q.reasons["method"]["key"] == "planner.reason.method_qlora"
    assert q.estimates["memory_status"] == "fits"
    every_field_explained(q)
    no_bnb = propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(5_000),
                     hardware=_gpus(16, four_bit=False))
    assert no_bnb.plan.method == "lora"
    assert any(w["key"] == "planner.warn.qlora_missing" for w in no_bnb.warnings)

    long_rows = stats(5_000, p90=2_500, p99=3_000)
    ckpt = propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=long_rows,
                   hardware=_gpus(40))
    assert ckpt.plan.method == "lora" and ckpt.plan.grad_checkpointing is True and ckpt.plan.batch_size == 1
    assert ckpt.plan.max_seq_len >= 3_000  # the rows stay whole
    assert ckpt.reasons["grad_checkpointing"]["key"] == "planner.reason.ckpt_memory"
    roomy = propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=long_rows,
                    hardware=HARDWARE["gpu80"])
    assert roomy.plan.grad_checkpointing is False  # it would only slow the run down
    assert ckpt.estimates["minutes"] > roomy.estimates["minutes"]


def test_several_gpus_train_in_parallel_with_the_same_effective_batch():
    one = propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(50_000),
                  hardware=_gpus(80))
    four = propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(50_000),
                   hardware=_gpus(80, count=4))
    assert one.plan.num_processes == 1 and four.plan.num_processes == 4
    assert four.reasons["num_processes"]["key"] == "planner.reason.processes_gpus"
    assert (one.plan.batch_size * one.plan.grad_accum
            == four.plan.batch_size * four.plan.grad_accum * 4 == one.estimates["effective_batch"])
    assert four.estimates["steps"] == one.estimates["steps"]
    assert four.estimates["minutes"] < one.estimates["minutes"] / 2


def test_a_full_fine_tune_too_big_for_one_gpu_is_split_over_the_gpus():
    """A 7B model changed in every weight needs far more than one 80 GB GPU holds (weights, gradients and
    Adam's moments in fp32); split over eight it fits. Where the model fits whole it stays whole (faster)."""
    eight = propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(50_000),
                    hardware=_gpus(80, count=8), overrides={"method": "full"})
    assert eight.plan.method == "full" and eight.plan.num_processes == 8 and eight.plan.fsdp is True
    reason = eight.reasons["fsdp"]
    assert reason["key"] == "planner.reason.fsdp_on" and float(reason["params"]["shard_gb"]) < 80
    assert float(reason["params"]["need_gb"]) > 80 and eight.estimates["memory_status"] != "does_not_fit"
    half = get_entry("qwen2.5-0.5b-instruct").to_dict()
    small = propose(model="m", dataset="d", task="chat", level="L3", model_info=half, data_stats=stats(20_000),
                    hardware=_gpus(80, count=2))
    assert small.plan.method == "full" and small.plan.fsdp is False
    assert small.reasons["fsdp"]["key"] == "planner.reason.fsdp_off"
    lora = propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(5_000),
                   hardware=_gpus(80, count=2))
    assert lora.plan.fsdp is False and lora.reasons["fsdp"]["key"] == "planner.reason.fsdp_not_full"
    with pytest.raises(UserError) as refused:
        propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(5_000),
                hardware=_gpus(80, count=2), overrides={"fsdp": True})
    assert refused.value.key == "plan.fsdp_needs_full"


def test_qlora_chosen_by_hand_on_a_cpu_is_warned():
    p = propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(5_000),
                hardware=HARDWARE["cpu16"], overrides={"method": "qlora"})
    assert p.plan.method == "qlora"
    assert any(w["key"] == "planner.warn.qlora_unavailable" for w in p.warnings)


def test_time_estimate_follows_this_machines_measured_rate(tiny):
    """Without an earlier job to time, the estimate scales with the matmul rate measured here."""
    def plan(rate):
        return propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(5_000),
                       hardware=HARDWARE["cpu16"], matmul_flops=rate).estimates

    slow, fast, table = plan(50e9), plan(200e9), plan(None)
    assert slow["time_source"] == fast["time_source"] == "calibrated" and table["time_source"] == "estimated"
    assert 3.5 < slow["step_seconds"] / fast["step_seconds"] <= 4.0


def test_a_bf16_step_on_a_cpu_is_timed_from_its_fp32_rate(tiny):
    """Only a bf16 step's products speed up: measured on two CPUs whose bf16 products were 2.3x and 4.2x their
    fp32 ones, the step followed the fp32 rate. So the bf16 multiple decides bf16, and the fp32 rate the time."""
    def estimate(fp32, bf16):
        return propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(5_000),
                       hardware=HARDWARE["cpu16"], matmul_flops=fp32, cpu_bf16_flops=bf16).estimates

    amd, xeon, faster = estimate(193e9, 433e9), estimate(193e9, 810e9), estimate(386e9, 866e9)
    assert amd["time_source"] == "calibrated"
    assert amd["step_seconds"] == pytest.approx(xeon["step_seconds"])
    assert faster["step_seconds"] == pytest.approx(amd["step_seconds"] / 2, rel=0.1)


def test_a_cpu_whose_bf16_products_measured_clearly_faster_trains_in_bf16(tiny):
    """Precision auto on a CPU follows what was measured there: with matrix engines for bf16 (here 10x
    fp32) the plan says bf16 and why, its memory and time estimates use bf16; where bf16 is no faster, fp32.
    A full fine-tune keeps fp32 weights either way."""
    def plan(bf16, method=None):
        overrides = {"method": method} if method else None
        return propose(model="m", dataset="d", task="chat", level="L2", model_info=SEVEN_B, data_stats=stats(5_000),
                       hardware=HARDWARE["cpu16"], overrides=overrides, matmul_flops=200e9, cpu_bf16_flops=bf16)

    amx, laptop = plan(2000e9), plan(150e9)
    assert amx.reasons["precision"]["key"] == "planner.reason.precision_cpu_bf16"
    assert amx.reasons["precision"]["params"] == {"bf16": "2000", "fp32": "200"}
    assert laptop.reasons["precision"]["key"] == "planner.reason.precision_cpu_fp32"
    assert amx.plan.precision == laptop.plan.precision == "auto"
    assert amx.estimates["memory_bytes"] < laptop.estimates["memory_bytes"]  # 7B of weights in 2 bytes, not 4
    assert amx.estimates["step_seconds"] < laptop.estimates["step_seconds"]
    assert plan(2000e9, method="full").plan.precision == "fp32"
