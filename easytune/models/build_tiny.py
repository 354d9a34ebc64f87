"""Build the built-in tiny chat model that ships in ``assets/tiny-model``.

    python -m easytune.models.build_tiny [--out assets/tiny-model] [--seed 0]

The tiny model lets the whole app (plan, train, check, export) run end to end on a laptop CPU in about
a minute, with no download. It is built from text in this repository only:

* ``presets/general_reference/{en,zh}.txt``: general-knowledge sentences,
* ``easytune/models/tiny_corpus/chat.jsonl``: short generic chat questions and answers,
* ``assets/demo/*.jsonl``: the demo datasets, used **only** so that every Chinese character in them gets a
  token, never as pre-training text: they are what users fine-tune on, and fine-tuning must visibly
  change the model's answers.

Steps: train a byte-level BPE tokenizer with ChatML special tokens, build a small ``LlamaForCausalLM``,
pre-train it briefly in fp32 on CPU, then save safetensors weights, tokenizer files and a model card.
The same seed on the same machine gives the same weights.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERAL_DIR = ROOT / "presets" / "general_reference"
DEMO_DIR = ROOT / "assets" / "demo"
CHAT_CORPUS = Path(__file__).resolve().parent / "tiny_corpus" / "chat.jsonl"

EOT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [EOT, IM_START, IM_END]
CJK_CHAR = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
CJK_OR_DIGIT = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef0-9]"

# ChatML. Each message renders as "<|im_start|>{role}\n{content}<|im_end|>\n", and the generation prompt
# is "<|im_start|>assistant\n", so render(messages[:k], add_generation_prompt=True) is always a string
# prefix of render(messages[:k+1]) when messages[k] is an assistant turn. The trainer relies on this to
# find the assistant tokens; the model learns to end every answer with <|im_end|>.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

DEFAULTS = {
    "vocab_size": 6000,
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "seq_len": 128,
    "batch_size": 16,
    "steps": 1000,
    "lr": 3e-3,
    "warmup": 60,
    "weight_decay": 0.1,
    "chat_repeat": 3,
    "split_prob": 0.1,
}


def _read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _read_conversations(path: Path) -> list[list[dict]]:
    convs = []
    for ln in path.read_text(encoding="utf-8").splitlines():
        if ln.strip():
            convs.append(json.loads(ln)["messages"])
    return convs


def load_corpus() -> dict:
    """Everything the build reads, split by use."""
    general = _read_lines(GENERAL_DIR / "en.txt") + _read_lines(GENERAL_DIR / "zh.txt")
    chat = _read_conversations(CHAT_CORPUS)
    demo = []
    for path in sorted(DEMO_DIR.glob("*.jsonl")):
        demo.extend(_read_conversations(path))
    return {"general": general, "chat": chat, "demo": demo}


def train_tokenizer(corpus: dict, vocab_size: int):
    """Byte-level BPE over the zh+en text, wrapped as a ``PreTrainedTokenizerFast`` with ChatML."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(corpus["general"])
    for conv in corpus["chat"]:
        texts.extend(m["content"] for m in conv)
    texts.extend(["system", "user", "assistant"])
    # Every CJK character of the whole corpus, demo datasets included, gets a token of its own, even one
    # that occurs only once. Merges above the character level come from the pre-training text only: a
    # word token learnt from the demo datasets alone would never be seen by the model in pre-training,
    # and LoRA, which leaves the embeddings frozen, could hardly learn to produce it.
    demo_texts = [m["content"] for conv in corpus["demo"] for m in conv]
    cjk = sorted({ch for text in texts + demo_texts for ch in re.findall(CJK_CHAR, text)})
    texts.extend(cjk * 2)

    tok = Tokenizer(models.BPE())
    # Every CJK character, CJK punctuation mark and digit is its own pre-token, so Chinese is tokenised by
    # character and numbers digit by digit: a tiny corpus then cannot glue whole phrases or prices into
    # single tokens that the model never sees in context. Other text follows the usual byte-level split.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CJK_OR_DIGIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=EOT,
        unk_token=None,
        bos_token=None,
        model_max_length=DEFAULTS["max_position_embeddings"],
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    hf.add_special_tokens({"additional_special_tokens": [IM_START]})
    hf.chat_template = CHAT_TEMPLATE
    return hf


def _merge_parents(tokenizer) -> dict[int, tuple[int, int]]:
    """token id -> the two token ids its BPE merge joined."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    vocab = state["vocab"]
    parents = {}
    for merge in state["merges"]:
        a, b = merge.split(" ") if isinstance(merge, str) else merge
        parents[vocab[a + b]] = (vocab[a], vocab[b])
    return parents


def split_some(ids: list[int], parents: dict[int, tuple[int, int]], rng: random.Random, p: float) -> list[int]:
    """Undo each BPE merge with probability p (recursively): the same text, another segmentation.

    Pre-training on a few such segmentations lets the model meet the smaller pieces that new words and
    rare Chinese characters (from the user's data) break into, not only the tokens of its own corpus.
    """
    out: list[int] = []
    stack = list(reversed(ids))
    while stack:
        tid = stack.pop()
        if tid in parents and rng.random() < p:
            a, b = parents[tid]
            stack.extend((b, a))
        else:
            out.append(tid)
    return out


def build_stream(docs: list[list[int]], rng: random.Random, eot_id: int, split=None) -> list[int]:
    order = list(range(len(docs)))
    rng.shuffle(order)
    stream: list[int] = []
    for i in order:
        stream.extend(split(docs[i]) if split else docs[i])
        stream.append(eot_id)
    return stream


def build(out: Path, seed: int = 0, steps: int | None = None, log_every: int = 50) -> dict:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    t_start = time.time()
    cfg = dict(DEFAULTS)
    if steps is not None:
        cfg["steps"] = steps
    random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)

    corpus = load_corpus()
    print(
        f"[tiny] corpus: {len(corpus['general'])} reference lines, {len(corpus['chat'])} chat rows "
        f"(+{len(corpus['demo'])} demo rows, for the tokenizer's characters only)",
        flush=True,
    )

    tokenizer = train_tokenizer(corpus, cfg["vocab_size"])
    eot_id, im_end_id = tokenizer.convert_tokens_to_ids(EOT), tokenizer.convert_tokens_to_ids(IM_END)
    print(f"[tiny] tokenizer: {len(tokenizer)} tokens", flush=True)

    # Pre-training documents: one reference sentence each, and each chat conversation rendered with the
    # chat template (repeated, so the ChatML format is learnt firmly).
    docs = [tokenizer.encode(line, add_special_tokens=False) for line in corpus["general"]]
    chat_docs = [
        tokenizer.encode(tokenizer.apply_chat_template(conv, tokenize=False), add_special_tokens=False)
        for conv in corpus["chat"]
    ]
    docs += chat_docs * cfg["chat_repeat"]
    n_tokens = sum(len(d) + 1 for d in docs)
    print(f"[tiny] pre-training text: {n_tokens} tokens per pass", flush=True)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=cfg["num_key_value_heads"],
        max_position_embeddings=cfg["max_position_embeddings"],
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        bos_token_id=None,
        eos_token_id=im_end_id,
        pad_token_id=eot_id,
    )
    model = LlamaForCausalLM(config)
    model.to(torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[tiny] model: {n_params:,} parameters", flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embed" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg["lr"],
        betas=(0.9, 0.95),
        eps=1e-8,
    )

    def lr_at(step: int) -> float:
        if step < cfg["warmup"]:
            return cfg["lr"] * (step + 1) / cfg["warmup"]
        progress = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
        return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    rng = random.Random(seed)
    parents = _merge_parents(tokenizer)

    def split(doc: list[int]) -> list[int]:
        return split_some(doc, parents, rng, cfg["split_prob"])

    seen: set[int] = set()
    seq, bsz = cfg["seq_len"], cfg["batch_size"]
    batches: list = []
    model.train()
    losses: list[float] = []
    t_train = time.time()
    for step in range(cfg["steps"]):
        if not batches:
            stream = build_stream(docs, rng, eot_id, split)
            chunks = [stream[i : i + seq] for i in range(0, len(stream) - seq + 1, seq)]
            rng.shuffle(chunks)
            batches = [chunks[i : i + bsz] for i in range(0, len(chunks) - bsz + 1, bsz)]
        batch = batches.pop()
        for row in batch:
            seen.update(row)
        ids = torch.tensor(batch, dtype=torch.long)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % log_every == 0 or step == 0:
            recent = sum(losses[-log_every:]) / len(losses[-log_every:])
            elapsed = time.time() - t_train
            print(
                f"[tiny] step {step + 1}/{cfg['steps']}  loss {recent:.3f}  lr {lr_at(step):.2e}  {elapsed:.0f}s",
                flush=True,
            )
    train_s = time.time() - t_train
    final_loss = sum(losses[-50:]) / len(losses[-50:])

    # Tokens that never occurred in pre-training (say a character found only in the demo datasets) got
    # no useful signal, only a steady push away from every prediction. Give each one the mean embedding of
    # the two tokens its BPE merge joined, so fine-tuning starts from a sensible point.
    seen.update((eot_id, im_end_id, tokenizer.convert_tokens_to_ids(IM_START)))
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        seen_rows = emb[torch.tensor(sorted(seen))]
        mean, std = seen_rows.mean(0), seen_rows.std(0)
        noise = torch.Generator().manual_seed(seed)
        fixed: dict[int, torch.Tensor] = {}

        def vec(tid: int) -> torch.Tensor:
            if tid in seen:
                return emb[tid].clone()
            if tid not in fixed:
                if tid in parents:
                    a, b = parents[tid]
                    fixed[tid] = (vec(a) + vec(b)) / 2
                else:  # a byte never seen: a typical embedding, distinct from the others
                    fixed[tid] = mean + std * torch.randn(mean.shape, generator=noise)
            return fixed[tid]

        for tid in range(len(tokenizer)):
            vec(tid)
        for tid, v in fixed.items():
            emb[tid] = v
    print(f"[tiny] {len(fixed)} tokens unseen in pre-training were re-initialised from their parts", flush=True)

    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=None,
        eos_token_id=im_end_id,
        pad_token_id=eot_id,
        do_sample=False,
    )

    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("*.bin")) + list(out.glob("*.pt")) + list(out.glob("*.pkl")):
        stale.unlink()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _normalise_tokenizer_files(out)

    info = {
        "params": n_params,
        "vocab": len(tokenizer),
        "steps": cfg["steps"],
        "final_loss": round(final_loss, 3),
        "train_seconds": round(train_s, 1),
        "build_seconds": round(time.time() - t_start, 1),
        "seed": seed,
        "config": cfg,
        "tokens_per_pass": n_tokens,
    }
    _write_model_card(out, info)
    size_mb = (out / "model.safetensors").stat().st_size / 1e6
    print(
        f"[tiny] done: final loss {final_loss:.3f}, {n_params:,} parameters, model.safetensors {size_mb:.1f} MB, "
        f"built in {info['build_seconds']:.0f}s -> {out}",
        flush=True,
    )
    return info


def _normalise_tokenizer_files(out: Path) -> None:
    """Keep the chat template inside tokenizer_config.json and a class name every supported release knows."""
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["eos_token"] = IM_END
    cfg["pad_token"] = EOT
    # Newer releases write extra special tokens as a list under "extra_special_tokens", which older
    # releases cannot read; "additional_special_tokens" is understood by both.
    cfg.pop("extra_special_tokens", None)
    cfg["additional_special_tokens"] = [IM_START]
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    jinja = out / "chat_template.jinja"
    if jinja.exists():
        jinja.unlink()


def _write_model_card(out: Path, info: dict) -> None:
    c = info["config"]
    card = f"""# EasyTune tiny model

A very small chat model (Llama architecture, {info["params"]:,} parameters, fp32 safetensors) that ships with
EasyTune, so that planning, training, checking and exporting can be tried end to end on a CPU in about a
minute with nothing to download. It knows a little general knowledge and the ChatML chat format. It is a
toy for demos and tests, not a useful assistant.

- Architecture: `LlamaForCausalLM`, hidden size {c["hidden_size"]}, {c["num_hidden_layers"]} layers,
  {c["num_attention_heads"]} attention heads ({c["num_key_value_heads"]} key/value heads), MLP size
  {c["intermediate_size"]}, context {c["max_position_embeddings"]} tokens, tied embeddings.
- Tokenizer: byte-level BPE with {info["vocab"]} tokens for Chinese (one token per character) and English;
  ChatML special tokens `<|im_start|>`, `<|im_end|>` (end of turn, eos) and `<|endoftext|>` (padding).
- Pre-training: {info["steps"]} AdamW steps (batch {c["batch_size"]} x {c["seq_len"]} tokens, peak learning
  rate {c["lr"]}) on `presets/general_reference/` and `easytune/models/tiny_corpus/chat.jsonl`; final training
  loss {info["final_loss"]:.3f}. The demo datasets in `assets/demo/` only gave the tokenizer their Chinese
  characters; the model never saw them, so fine-tuning on them visibly changes its answers.
- Rebuild: `python -m easytune.models.build_tiny --out assets/tiny-model --seed {info["seed"]}` (a few
  minutes on a 2-core CPU; the same seed on the same machine gives the same weights).
- Fine-tuning: LoRA r=8, alpha=16 on every linear layer except `lm_head`, learning rate 5e-3, batch 8;
  about 25 epochs over a 60-row dataset (some 200 steps, well under a minute on a 2-core CPU) reproduce
  the trained answers.

Licence: Apache-2.0, like the rest of EasyTune. All training text was written for this project.
"""
    (out / "README.md").write_text(card, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build the built-in tiny chat model.")
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "tiny-model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help=f"pre-training steps (default {DEFAULTS['steps']})")
    args = ap.parse_args(argv)
    build(args.out, seed=args.seed, steps=args.steps)


if __name__ == "__main__":
    main()
