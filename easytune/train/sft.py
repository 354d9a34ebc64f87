"""Supervised fine-tuning data: conversations → token ids with loss only on assistant turns."""

from __future__ import annotations

IGNORE = -100

# For base models that ship no chat template (the worker warns when it falls back to this).
DEFAULT_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def encode_conversation(tokenizer, row: dict, max_len: int) -> dict | None:
    """Token ids and labels for one canonical row; None when no assistant turn is left to learn.

    The conversation is rendered turn by turn: the text before each assistant answer is exactly the
    prompt the model sees at inference (rendered with add_generation_prompt), so it is tokenized as
    one piece and masked; the answer's tokens are the labels.
    """
    messages = row["messages"]
    ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (prompt.startswith(rendered) and full.startswith(prompt)):
            raise ValueError(f"chat template is not incremental at line {row.get('line')}")
        context = tokenizer(prompt[len(rendered):], add_special_tokens=False)["input_ids"]
        answer = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
        ids += context + answer
        labels += [IGNORE] * len(context) + (answer if message.get("train", True) else [IGNORE] * len(answer))
        rendered = full
    ids, labels = ids[:max_len], labels[:max_len]
    if all(label == IGNORE for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def encode_text(tokenizer, row: dict, max_len: int) -> list[dict]:
    """Raw text for continued pre-training: every token is learned, in chunks of the context length."""
    ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return [{"input_ids": ids[i:i + max_len], "labels": ids[i:i + max_len]}
            for i in range(0, len(ids), max_len) if len(ids[i:i + max_len]) > 1]


def encode_rendered(tokenizer, row: dict, max_len: int) -> list[dict]:
    """A conversation learned whole, every token (continued pre-training on chat-formatted data)."""
    return encode_text(tokenizer, {"text": tokenizer.apply_chat_template(row["messages"], tokenize=False)}, max_len)


def encode_row(tokenizer, row: dict, max_len: int, objective: str = "sft") -> list[dict]:
    """Training examples from one canonical row (see easytune.data): a conversation or raw text."""
    if row.get("kind") == "text":
        return encode_text(tokenizer, row, max_len)
    if objective == "pretrain":
        return encode_rendered(tokenizer, row, max_len)
    example = encode_conversation(tokenizer, row, max_len)
    return [example] if example is not None else []
