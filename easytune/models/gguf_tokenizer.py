"""A GGUF file's tokenizer, rebuilt from its metadata as the model was trained with it.

llama.cpp stores a tokenizer as lists (`tokenizer.ggml.tokens`, `.merges`, `.token_type`, `.scores`)
plus two names: the model kind (`gpt2`: byte-level BPE; `llama`: SentencePiece) and, for byte-level
BPE, the pre-tokenizer (`tokenizer.ggml.pre`: how text is split into words before merging).
Transformers' own GGUF reader builds every Llama-architecture tokenizer as SentencePiece, so a
byte-level one (SmolLM2, Llama 3) decodes to "ĠTheĠcapital…" once saved and reloaded. Here the
kind decides: byte-level BPE gets its own splitting rules, byte-level decoder and special tokens;
SentencePiece files go to Transformers' reader, which is right for them.

The pre-tokenizer regexes are llama.cpp's (llama-vocab.cpp), named by the `pre` value it writes.
An unknown `pre` falls back to GPT-2's rules and says so; the import's sanity check then decides
whether the result reads clean text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# pre name -> (split regex, digits one by one first)
PRE_TOKENIZERS: dict[str, tuple[str, bool]] = {
    **{name: (GPT2_SPLIT, False) for name in ("default", "gpt-2", "gpt2", "phi-2", "jina-es", "jina-de",
                                              "olmo", "jais", "trillion")},
    **{name: (GPT2_SPLIT, True) for name in ("smollm", "starcoder", "refact", "command-r", "codeshell",
                                             "exaone", "minerva")},
    **{name: (LLAMA3_SPLIT, False) for name in ("llama3", "llama-bpe", "falcon3", "pixtral", "dbrx",
                                                "smaug-bpe", "llama4")},
    **{name: (QWEN2_SPLIT, False) for name in ("qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan")},
}

TOKEN_CONTROL, TOKEN_USER_DEFINED = 3, 4  # llama.cpp's token types for special and added tokens


@dataclass
class GGUFTokenizerSpec:
    """What the GGUF metadata says about its tokenizer (the lists are the file's own)."""

    kind: str  # gpt2 | llama | ...
    pre: str | None
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    add_bos: bool = False
    chat_template: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. an unknown pre-tokenizer


def read_spec(reader) -> GGUFTokenizerSpec:
    """The tokenizer fields of an open gguf.GGUFReader."""

    def value(key, default=None):
        found = reader.fields.get(key)
        return default if found is None else found.contents()

    return GGUFTokenizerSpec(
        kind=value("tokenizer.ggml.model", "llama"), pre=value("tokenizer.ggml.pre"),
        tokens=value("tokenizer.ggml.tokens", []), token_types=value("tokenizer.ggml.token_type", []),
        merges=value("tokenizer.ggml.merges", []), bos_id=value("tokenizer.ggml.bos_token_id"),
        eos_id=value("tokenizer.ggml.eos_token_id"), unk_id=value("tokenizer.ggml.unknown_token_id"),
        pad_id=value("tokenizer.ggml.padding_token_id"), add_bos=bool(value("tokenizer.ggml.add_bos_token", False)),
        chat_template=value("tokenizer.chat_template"))


def _byte_level(spec: GGUFTokenizerSpec):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    split, single_digits = PRE_TOKENIZERS.get(spec.pre or "default", (None, False))
    if split is None:
        spec.notes.append(f"unknown pre-tokenizer {spec.pre!r}: GPT-2's rules used")
        split = GPT2_SPLIT
    vocab = {token: index for index, token in enumerate(spec.tokens)}
    merges = [tuple(merge.split(" ", 1)) for merge in spec.merges]
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    steps = [pre_tokenizers.Digits(individual_digits=True)] if single_digits else []
    steps += [pre_tokenizers.Split(Regex(split), behavior="isolated"),
              pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    backend.pre_tokenizer = pre_tokenizers.Sequence(steps)
    backend.decoder = decoders.ByteLevel()
    post = [processors.ByteLevel(trim_offsets=False)]
    if spec.add_bos and spec.bos_id is not None:
        bos = spec.tokens[spec.bos_id]
        post.append(processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                  special_tokens=[(bos, spec.bos_id)]))
    backend.post_processor = processors.Sequence(post)
    backend.add_tokens([AddedToken(spec.tokens[i], special=kind == TOKEN_CONTROL, normalized=False)
                        for i, kind in enumerate(spec.token_types)
                        if kind in (TOKEN_CONTROL, TOKEN_USER_DEFINED)])
    return backend


def build_tokenizer(spec: GGUFTokenizerSpec, gguf_path: str):
    """A transformers tokenizer for the GGUF file, ready for save_pretrained."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if spec.kind != "gpt2":  # SentencePiece and the rest: Transformers' GGUF reader handles them
        from pathlib import Path

        path = Path(gguf_path)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        if spec.chat_template and not tokenizer.chat_template:
            tokenizer.chat_template = spec.chat_template
        return tokenizer

    def token(index):
        return spec.tokens[index] if index is not None and 0 <= index < len(spec.tokens) else None

    eos = token(spec.eos_id)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_byte_level(spec), bos_token=token(spec.bos_id), eos_token=eos,
        unk_token=token(spec.unk_id), pad_token=token(spec.pad_id) or eos, clean_up_tokenization_spaces=False)
    tokenizer.add_bos_token = spec.add_bos
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    return tokenizer
