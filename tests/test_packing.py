"""Padding-free packing gives the same losses as padded batches (no example sees another), and tokenised
rows are cached between runs; a row that cannot be tokenised is named by its line."""

import json
from pathlib import Path

import pytest
import torch

from support import ROOT, cli_json, write_plan

pytestmark = pytest.mark.slow
TINY = ROOT / "assets" / "tiny-model"
FAQ = ROOT / "assets" / "demo" / "shop_faq_en.jsonl"


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(TINY, use_safetensors=True, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(TINY)


@pytest.fixture(scope="module")
def examples(tiny):
    from easytune.train.sft import encode_row, encode_text

    _, tokenizer = tiny
    rows = [json.loads(line) for line in FAQ.read_text(encoding="utf-8").splitlines()][:12]
    texts = [{"text": "The river flows to the sea, and the sea returns it as rain over the hills."}] * 2
    return ([e for row in rows for e in encode_row(tokenizer, row, 256)]
            + [e for row in texts for e in encode_text(tokenizer, row, 256)])


def batch_loss(model, examples, pack):
    from easytune.train.packing import collate

    batch, _ = collate([(e["input_ids"], e["labels"]) for e in examples], 0, "cpu", pack)
    with torch.no_grad():
        return model(**batch, use_cache=False).loss.item()


def test_packed_and_padded_batches_give_the_same_loss(tiny, examples):
    from easytune.train.packing import packed, padding_share

    model, _ = tiny
    for start in range(0, len(examples), 7):
        chunk = examples[start:start + 7]
        assert abs(batch_loss(model, chunk, pack=True) - batch_loss(model, chunk, pack=False)) < 1e-4
    # The same tokens concatenated with positions running on would let each example read the ones before
    # it: a different loss, so the equality above is the proof that packed examples stay apart.
    batch, _ = packed([(e["input_ids"], e["labels"]) for e in examples[:7]], "cpu")
    with torch.no_grad():
        bleeding = model(input_ids=batch["input_ids"], labels=batch["labels"], use_cache=False).loss.item()
    assert abs(bleeding - batch_loss(model, examples[:7], pack=False)) > 1e-2
    assert 0.05 < padding_share(examples, 7) < 0.9, "the padding that packing saves is real"


def test_preference_scores_are_the_same_packed(tiny, examples):
    from easytune.train.dpo import sequence_logps
    from easytune.train.packing import packing_is_exact

    model, _ = tiny
    assert packing_is_exact(model, "cpu")
    sequences = [(e["input_ids"], e["labels"]) for e in examples[:6]]
    with torch.no_grad():
        together = sequence_logps(model, sequences, 0, "cpu", pack=True)
        apart = sequence_logps(model, sequences, 0, "cpu", pack=False)
    assert torch.allclose(together, apart, rtol=1e-5, atol=1e-3), (together, apart)


def job_for(tmp_path: Path) -> dict:
    return {"model_path": str(TINY), "train_file": str(FAQ), "val_file": None, "dataset_sha256": "x",
            "cache_dir": str(tmp_path / "cache")}


def test_tokenised_rows_are_cached_per_tokenizer_and_length(tmp_path, tiny):
    from easytune.train.tokens import load_examples

    _, tokenizer = tiny
    first, _, cached = load_examples(tokenizer, job_for(tmp_path), 256, "sft")
    assert not cached and len(first) == 62
    again, val, cached = load_examples(tokenizer, job_for(tmp_path), 256, "sft")
    assert cached and again == first and val is None
    shorter, _, cached = load_examples(tokenizer, job_for(tmp_path), 32, "sft")
    assert not cached and max(len(e["input_ids"]) for e in shorter) == 32
    assert len(list((tmp_path / "cache" / "tokens").glob("*.safetensors"))) == 2


def test_a_row_that_cannot_be_tokenised_is_named_by_its_line(tmp_path, tiny):
    from easytune.i18n import UserError
    from easytune.train.tokens import encode_rows

    _, tokenizer = tiny
    strict = type(tokenizer).from_pretrained(TINY)  # a template that refuses system turns, as some models' do
    strict.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                            "{{ raise_exception('System role not supported') }}{% endif %}"
                            "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
                            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    rows = [json.loads(line) for line in FAQ.read_text(encoding="utf-8").splitlines()][:5]
    for number, row in enumerate(rows, 1):
        row["line"] = number
    rows[2]["messages"].insert(0, {"role": "system", "content": "You are a shop assistant."})
    with pytest.raises(UserError) as caught:
        encode_rows(strict, rows, 256, "sft", "train.jsonl")
    assert caught.value.key == "train.error.bad_row" and caught.value.params["line"] == 3
    assert "System role not supported" in caught.value.message("en")
    assert "第 3 行" in caught.value.message("zh")


def test_a_packed_run_learns_as_a_padded_one_and_reuses_the_tokens(tmp_path):
    home = tmp_path / "home"
    runs = {}
    for pack in (True, False):
        plan = write_plan(tmp_path / f"plan-{pack}.yaml", packing=pack, max_steps=10, eval_every=10,
                          dataset="demo:shop_faq_en", retention_ratio=0.0, grad_checkpointing=not pack)
        job = cli_json("train", "--config", str(plan), home=home)
        assert job["state"] == "COMPLETED", job
        runs[pack] = [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]

    def losses(events):
        return [e["loss"] for e in events if e["type"] == "step"]

    assert losses(runs[True]) == pytest.approx(losses(runs[False]), rel=1e-2)  # Adam amplifies rounding
    assert losses(runs[True])[-1] < losses(runs[True])[0] * 0.8
    keys = {pack: [e["key"] for e in events if e["type"] == "log"] for pack, events in runs.items()}
    assert "train.log.tokenized" in keys[True] and "train.log.packing" in keys[True]
    assert "train.log.tokens_cached" in keys[False] and "train.log.packing" not in keys[False]
    assert "train.log.grad_checkpointing" in keys[False], "recomputing activations changes memory, not the result"


def test_short_bf16_sequences_on_a_cpu_take_the_math_kernel_with_the_same_loss(examples):
    """On a CPU in bf16, sequences up to SHORT tokens take SDPA's math kernel (its backward is faster there);
    a packed batch so computed scores as the fp32 model does, within bf16's rounding."""
    from contextlib import nullcontext

    from transformers import AutoModelForCausalLM

    from easytune.train.attention import SHORT, kernel_for, use_segment_attention

    query = torch.zeros(1, 2, 4, 8, dtype=torch.bfloat16)
    assert not isinstance(kernel_for(query, SHORT), nullcontext)
    assert isinstance(kernel_for(query, SHORT + 1), nullcontext)
    assert isinstance(kernel_for(query.float(), 8), nullcontext)
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = AutoModelForCausalLM.from_pretrained(TINY, use_safetensors=True, dtype=dtype).eval()
        use_segment_attention(model)
        losses[dtype] = batch_loss(model, examples[:7], pack=True)
    assert losses[torch.bfloat16] == pytest.approx(losses[torch.float32], rel=0.02)
