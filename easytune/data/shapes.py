"""Dataset shapes: which fields play which role, and conversion of one record to the canonical form.

Canonical rows (the `line` is added by the importer):
- SFT:        {"kind": "sft", "messages": [{"role", "content", ["train": False]}...], "tools": str | None}
- preference: {"kind": "preference", "messages": [prompt turns], "chosen": str, "rejected": str}
- KTO:        {"kind": "kto", "messages": [... incl. the answer], "label": bool}
- raw text:   {"kind": "text", "text": str, "chars": int}
Roles: system, user, assistant, tool (a tool's result), function_call (the model calling a tool).

A record's field names decide its shape (cached per set of names, so a uniform file costs one lookup per
row); an explicit mapping overrides the guess. Problems raise RowError with a reason and parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from easytune.data.errors import RowError
from easytune.i18n import UserError

SHAPES = ("alpaca", "pairs", "sharegpt", "openai", "preference", "kto", "text")
ROLES = (
    "messages",
    "prompt",
    "input",
    "response",
    "system",
    "history",
    "tools",
    "chosen",
    "rejected",
    "label",
    "text",
)
MAPPING_KEYS = ROLES + ("shape", "role", "content", "sheet")

# Field names (lower-cased) that play each role, most specific first.
ALIASES: dict[str, tuple[str, ...]] = {
    "messages": (
        "messages",
        "conversations",
        "conversation",
        "dialog",
        "dialogue",
        "dialogs",
        "chat",
        "turns",
        "对话",
        "会话",
        "多轮对话",
        "對話",
        "會話",
    ),
    "prompt": (
        "instruction",
        "prompt",
        "question",
        "query",
        "q",
        "user",
        "human",
        "input_text",
        "instruct",
        "指令",
        "问题",
        "问",
        "提问",
        "用户",
        "问句",
        "题目",
        "用户输入",
        "用户问题",
        "请求",
        "输入问题",
        "問題",
        "問",
        "提問",
        "使用者",
        "用戶",
        "題目",
    ),
    "input": ("input", "context", "输入", "上下文", "补充输入", "补充", "輸入", "補充"),
    "response": (
        "output",
        "response",
        "answer",
        "completion",
        "a",
        "assistant",
        "gpt",
        "bot",
        "reply",
        "target",
        "答案",
        "答",
        "回答",
        "输出",
        "回复",
        "答复",
        "助手",
        "应答",
        "模型回答",
        "标准答案",
        "輸出",
        "回覆",
        "答覆",
        "助理",
    ),
    "system": (
        "system",
        "system_prompt",
        "sys",
        "系统",
        "系统提示",
        "系统提示词",
        "人设",
        "系統",
        "系統提示",
    ),
    "history": ("history", "历史", "历史对话", "歷史"),
    "tools": ("tools", "functions", "工具"),
    "chosen": ("chosen", "preferred", "good", "优选回答", "好回答", "优选", "更好的回答"),
    "rejected": ("rejected", "dispreferred", "bad", "劣选回答", "差回答", "劣选", "更差的回答"),
    "label": ("label", "kto_tag", "标签", "標籤"),
    "text": ("text", "content", "body", "document", "文本", "正文", "内容", "全文", "內容"),
}
_ALPACA_PROMPTS = {"instruction", "instruct", "指令"}

ROLE_NAMES = {
    "user": "user",
    "human": "user",
    "用户": "user",
    "人类": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "ai": "assistant",
    "助手": "assistant",
    "system": "system",
    "developer": "system",
    "系统": "system",
    "function_call": "function_call",
    "tool_call": "function_call",
    "tool_calls": "function_call",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
    "tool_response": "tool",
    "function_response": "tool",
    "工具": "tool",
}
_TURN_KEYS = (
    ("role", "content"),
    ("from", "value"),
    ("speaker", "text"),
    ("role", "text"),
    ("from", "content"),
)
_PROMPT_SIDE = ("user", "tool")
_ANSWER_SIDE = ("assistant", "function_call")

_TRUE = {"true", "1", "yes", "y", "good", "desirable", "positive", "是", "好", "对", "正确", "正"}
_FALSE = {"false", "0", "no", "n", "bad", "undesirable", "negative", "否", "坏", "差", "错", "错误", "负"}


def _show(value, width: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class Plan:
    """How one set of field names maps onto a shape."""

    shape: str  # alpaca | pairs | conversation | preference | kto | text | unknown | missing_answer | ...
    fields: dict[str, str] = field(default_factory=dict)  # role -> source field
    ignored: tuple[str, ...] = ()


def validate_mapping(mapping: dict | None) -> dict:
    mapping = dict(mapping or {})
    for role, src in mapping.items():
        if role not in MAPPING_KEYS:
            raise UserError("data.mapping_unknown_role", role=role, roles=", ".join(MAPPING_KEYS))
        if not isinstance(src, str) or not src.strip():
            raise UserError("data.mapping_bad_value", role=role)
    shape = mapping.get("shape")
    if shape is not None and shape not in SHAPES:
        raise UserError("data.mapping_unknown_shape", shape=shape, shapes=", ".join(SHAPES))
    return mapping


def plan_for(keys, mapping: dict) -> Plan:
    """Decide the shape for records with these field names."""
    keys = [k for k in keys if isinstance(k, str)]
    by_lower: dict[str, str] = {}
    for k in keys:
        by_lower.setdefault(k.strip().lower(), k)
    fields: dict[str, str] = {}
    used: set[str] = set()
    for role in ROLES:
        if role in mapping:
            fields[role] = mapping[role]
            used.add(mapping[role])
    for role in ROLES:
        if role in fields:
            continue
        for alias in ALIASES[role]:
            k = by_lower.get(alias)
            if k is not None and k not in used:
                fields[role] = k
                used.add(k)
                break
    if "prompt" not in fields and "input" in fields and "prompt" not in mapping:
        fields["prompt"] = fields.pop("input")
    shape = mapping.get("shape") or _infer_shape(fields)
    if shape in ("sharegpt", "openai"):
        shape = "conversation"
    relevant = _RELEVANT.get(shape, ROLES)
    for role in list(fields):
        if role not in relevant and role not in mapping:
            used.discard(fields.pop(role))
    ignored = tuple(k for k in keys if k not in used)
    return Plan(shape, fields, ignored)


_RELEVANT = {
    "alpaca": ("prompt", "input", "response", "system", "history", "tools"),
    "pairs": ("prompt", "input", "response", "system", "history", "tools"),
    "conversation": ("messages", "system", "tools"),
    "preference": ("messages", "prompt", "input", "system", "chosen", "rejected"),
    "kto": ("messages", "prompt", "input", "response", "system", "label"),
    "text": ("text",),
}


def _infer_shape(f: dict) -> str:
    if "chosen" in f and "rejected" in f:
        return "preference"
    if "messages" in f:
        return "kto" if "label" in f else "conversation"
    if "label" in f and "prompt" in f and "response" in f:
        return "kto"
    if "prompt" in f and "response" in f:
        prompt_key = f["prompt"].strip().lower()
        return "alpaca" if prompt_key in _ALPACA_PROMPTS or "input" in f or "history" in f else "pairs"
    if "text" in f:
        return "text"
    if "prompt" in f:
        return "missing_answer"
    if "response" in f:
        return "missing_prompt"
    return "unknown"


# ------------------------------------------------------------------------------------------ value helpers


def _text(value, field_name: str) -> str | None:
    """A text value: str as is, numbers as digits, OpenAI content parts joined; None/NaN as missing."""
    if value is None:
        return None
    if type(value) is str:
        return value
    if isinstance(value, bool):
        raise RowError("wrong_type", field=field_name, value=_show(value))
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return None
        return str(value)
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif (
                isinstance(part, dict)
                and part.get("type", "text") == "text"
                and isinstance(part.get("text"), str)
            ):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type"):
                raise RowError("unsupported_content", field=field_name, type=str(part.get("type")))
            else:
                raise RowError("wrong_type", field=field_name, value=_show(value))
        return "\n".join(parts)
    raise RowError("wrong_type", field=field_name, value=_show(value))


def _maybe_json(value):
    """Spreadsheet and Parquet cells often hold a JSON list/object as text."""
    if isinstance(value, str):
        s = value.strip()
        if s[:1] in ("[", "{"):
            try:
                return json.loads(s)
            except ValueError:
                return value
    return value


def _tools(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        s = value.strip()
        if not s or s in ("[]", "{}", "null"):
            return None
        try:
            json.loads(s)
        except ValueError:
            raise RowError("invalid_tools", value=_show(s)) from None
        return s
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False) if value else None
    raise RowError("invalid_tools", value=_show(value))


def _label(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    raise RowError("bad_label", value=_show(value))


def _tool_call_text(calls) -> str:
    out = []
    for call in calls if isinstance(calls, list) else [calls]:
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or "name" not in fn:
            raise RowError("wrong_type", field="tool_calls", value=_show(calls))
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                pass
        out.append({"name": fn["name"], "arguments": args})
    return json.dumps(out[0] if len(out) == 1 else out, ensure_ascii=False)


def turns(value, field_name: str, role_key: str | None = None, content_key: str | None = None):
    """A list of chat turns -> (canonical messages, 'sharegpt' | 'openai')."""
    value = _maybe_json(value)
    if not isinstance(value, list):
        raise RowError("not_a_list", field=field_name, value=_show(value))
    if not value:
        raise RowError("empty_conversation", field=field_name)
    messages = []
    style = "openai"
    for i, turn in enumerate(value, 1):
        if not isinstance(turn, dict):
            raise RowError("bad_turn", field=field_name, turn=i, value=_show(turn))
        rk, ck = role_key, content_key
        if rk is None or ck is None:
            for a, b in _TURN_KEYS:
                if a in turn and (b in turn or a == "role"):
                    rk, ck = rk or a, ck or b
                    break
            else:
                raise RowError("bad_turn", field=field_name, turn=i, value=_show(turn))
        if rk == "from":
            style = "sharegpt"
        raw_role = turn.get(rk)
        role = ROLE_NAMES.get(str(raw_role).strip().lower()) if raw_role is not None else None
        if role is None:
            raise RowError("unknown_role", field=field_name, turn=i, role=_show(raw_role, 30))
        if role == "assistant" and turn.get("tool_calls"):
            role, text = "function_call", _tool_call_text(turn["tool_calls"])
        elif role == "assistant" and isinstance(turn.get("function_call"), dict):
            role, text = "function_call", _tool_call_text(turn["function_call"])
        else:
            text = _text(turn.get(ck), f"{field_name}[{i}]")
        if text is None or not text.strip():
            if role == "system":
                continue  # an empty system prompt is just no system prompt
            raise RowError("empty_turn", turn=i, role=role)
        message = {"role": role, "content": text}
        if role in _ANSWER_SIDE and (
            turn.get("train") is False or turn.get("loss") is False or turn.get("weight") in (0, 0.0)
        ):
            message["train"] = False
        messages.append(message)
    return messages, style


def check_order(messages: list[dict]) -> None:
    """System first (optional), then the user; after that user side (user, tool results) and answer side
    (assistant, tool calls) alternate, and a tool result follows a tool call."""
    expect_answer = False
    prev = None
    for i, m in enumerate(messages, 1):
        role = m["role"]
        if role == "system":
            if i != 1:
                raise RowError("misplaced_system", turn=i)
            prev = role
            continue
        if role == "tool" and prev != "function_call":
            raise RowError("tool_without_call", turn=i)
        if prev == "function_call" and role != "tool":
            raise RowError("call_without_result", turn=i - 1)
        if expect_answer and role not in _ANSWER_SIDE:
            raise RowError("turn_order", turn=i, role=role, expected="assistant")
        if not expect_answer and (role not in _PROMPT_SIDE or (role == "user" and prev == "function_call")):
            raise RowError("turn_order", turn=i, role=role, expected="user")
        expect_answer = not expect_answer
        prev = role


def _with_system(messages: list[dict], system) -> list[dict]:
    if system is None or (messages and messages[0]["role"] == "system"):
        return messages
    text = _text(system, "system")
    if text is None or not text.strip():
        return messages
    return [{"role": "system", "content": text}] + messages


# ------------------------------------------------------------------------------------------- serialising

_generic_dump = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_q = json.encoder.encode_basestring  # JSON string literal, non-ASCII kept as is (C implementation)


def _dump_messages(messages: list[dict]) -> str:
    out = []
    for m in messages:
        if len(m) == 2:
            out.append('{"role":"' + m["role"] + '","content":' + _q(m["content"]) + "}")
        else:
            out.append(_generic_dump(m))
    return ",".join(out)


def dump_row(row: dict) -> str:
    """Compact JSON of a canonical row; same text as json.dumps(separators=(",", ":"), ensure_ascii=False)."""
    kind = row["kind"]
    if kind == "sft" and len(row) == 3:
        tools = row["tools"]
        return (
            '{"kind":"sft","messages":['
            + _dump_messages(row["messages"])
            + '],"tools":'
            + ("null" if tools is None else _q(tools))
            + "}"
        )
    if kind == "text" and len(row) == 3:
        return '{"kind":"text","text":' + _q(row["text"]) + ',"chars":' + str(row["chars"]) + "}"
    if kind == "preference" and len(row) == 4:
        return (
            '{"kind":"preference","messages":['
            + _dump_messages(row["messages"])
            + '],"chosen":'
            + _q(row["chosen"])
            + ',"rejected":'
            + _q(row["rejected"])
            + "}"
        )
    if kind == "kto" and len(row) == 3:
        return (
            '{"kind":"kto","messages":['
            + _dump_messages(row["messages"])
            + '],"label":'
            + ("true" if row["label"] else "false")
            + "}"
        )
    return _generic_dump(row)


# ------------------------------------------------------------------------------------------------- shapes


class Normaliser:
    """Turns source records into canonical rows; remembers the plan per set of field names."""

    def __init__(self, mapping: dict | None = None):
        self.mapping = validate_mapping(mapping)
        self._plans: dict[tuple, Plan] = {}

    def plan(self, keys) -> Plan:
        key = tuple(keys)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 4096:
                self._plans.clear()
            plan = self._plans[key] = plan_for(key, self.mapping)
        return plan

    def __call__(self, value) -> tuple[dict, str, Plan | None]:
        """(canonical row, shape name, plan). Raises RowError."""
        if isinstance(value, str):
            if not value.strip():
                raise RowError("empty_text", field="text")
            return {"kind": "text", "text": value, "chars": len(value)}, "text", None
        if not isinstance(value, dict):
            raise RowError("not_object", value=_show(value))
        plan = self.plan(value)
        shape = plan.shape
        f = plan.fields
        for role, src in f.items():
            if src not in value and role in (
                "messages",
                "prompt",
                "response",
                "chosen",
                "rejected",
                "label",
                "text",
            ):
                raise RowError("missing_field", field=src)
        if shape == "alpaca" or shape == "pairs":
            return self._single_turn(value, f), shape, plan
        if shape == "conversation":
            row, style = self._conversation(value, f)
            return row, style, plan
        if shape == "preference":
            return self._preference(value, f), "preference", plan
        if shape == "kto":
            return self._kto(value, f), "kto", plan
        if shape == "text":
            text = _text(value.get(f["text"]), f["text"])
            if text is None or not text.strip():
                raise RowError("empty_text", field=f["text"])
            return {"kind": "text", "text": text, "chars": len(text)}, "text", plan
        if shape == "missing_answer":
            raise RowError("missing_answer", field=f["prompt"])
        if shape == "missing_prompt":
            raise RowError("missing_prompt", field=f["response"])
        raise RowError("unknown_shape", fields=_show(list(value)[:10], 80))

    # single prompt / answer (Alpaca, question/answer pairs) -------------------------------------------
    def _prompt_turns(self, value: dict, f: dict) -> list[dict]:
        prompt = _text(value.get(f["prompt"]), f["prompt"]) if "prompt" in f else None
        extra = _text(value.get(f["input"]), f["input"]) if "input" in f else None
        parts = [p for p in (prompt, extra) if p is not None and p.strip()]
        if not parts:
            raise RowError("empty_prompt", field=f.get("prompt", "prompt"))
        messages = []
        if "history" in f:
            messages += _history(value.get(f["history"]), f["history"])
        messages.append({"role": "user", "content": "\n".join(parts)})
        return _with_system(messages, value.get(f["system"]) if "system" in f else None)

    def _single_turn(self, value: dict, f: dict) -> dict:
        answer = _text(value.get(f["response"]), f["response"])
        if answer is None or not answer.strip():
            raise RowError("empty_answer", field=f["response"])
        messages = self._prompt_turns(value, f)
        messages.append({"role": "assistant", "content": answer})
        tools = _tools(_maybe_json(value.get(f["tools"]))) if "tools" in f else None
        return {"kind": "sft", "messages": messages, "tools": tools}

    # chat conversations -------------------------------------------------------------------------------
    def _turns(self, value: dict, f: dict):
        messages, style = turns(
            value.get(f["messages"]), f["messages"], self.mapping.get("role"), self.mapping.get("content")
        )
        messages = _with_system(messages, value.get(f["system"]) if "system" in f else None)
        return messages, style

    def _conversation(self, value: dict, f: dict):
        messages, style = self._turns(value, f)
        check_order(messages)
        if messages[-1]["role"] not in _ANSWER_SIDE:
            raise RowError("last_turn_unanswered", turn=len(messages))
        if not any(m["role"] in _ANSWER_SIDE and m.get("train", True) for m in messages):
            raise RowError("nothing_to_train")
        tools = _tools(_maybe_json(value.get(f["tools"]))) if "tools" in f else None
        return {"kind": "sft", "messages": messages, "tools": tools}, style

    # preference pairs ---------------------------------------------------------------------------------
    def _preference(self, value: dict, f: dict) -> dict:
        chosen_raw = _maybe_json(value.get(f["chosen"]))
        rejected_raw = _maybe_json(value.get(f["rejected"]))
        if "messages" in f:
            prompt, _ = self._turns(value, f)
        elif "prompt" in f and isinstance(_maybe_json(value.get(f["prompt"])), list):
            prompt, _ = turns(
                value.get(f["prompt"]), f["prompt"], self.mapping.get("role"), self.mapping.get("content")
            )
            prompt = _with_system(prompt, value.get(f["system"]) if "system" in f else None)
        elif "prompt" in f:
            prompt = self._prompt_turns(value, f)
        elif isinstance(chosen_raw, list) and isinstance(rejected_raw, list):
            prompt, chosen_raw, rejected_raw = _split_shared_prefix(chosen_raw, rejected_raw, f)
            prompt = _with_system(prompt, value.get(f["system"]) if "system" in f else None)
        else:
            raise RowError("missing_prompt", field=f["chosen"])
        check_order(prompt)
        if not prompt or prompt[-1]["role"] not in _PROMPT_SIDE:
            raise RowError("preference_prompt_end")
        chosen = _answer(chosen_raw, f["chosen"])
        rejected = _answer(rejected_raw, f["rejected"])
        if chosen == rejected:
            raise RowError("same_chosen_rejected")
        return {"kind": "preference", "messages": prompt, "chosen": chosen, "rejected": rejected}

    # KTO -----------------------------------------------------------------------------------------------
    def _kto(self, value: dict, f: dict) -> dict:
        label = _label(value.get(f["label"]))
        if "messages" in f:
            messages, _ = self._turns(value, f)
        elif "prompt" in f and "response" in f:
            answer = _text(value.get(f["response"]), f["response"])
            if answer is None or not answer.strip():
                raise RowError("empty_answer", field=f["response"])
            messages = self._prompt_turns(value, f) + [{"role": "assistant", "content": answer}]
        else:
            raise RowError("missing_field", field="messages")
        check_order(messages)
        if messages[-1]["role"] != "assistant":
            raise RowError("last_turn_unanswered", turn=len(messages))
        return {"kind": "kto", "messages": messages, "label": label}


def _history(value, field_name: str) -> list[dict]:
    value = _maybe_json(value)
    if value is None or value == "" or value == []:
        return []
    if not isinstance(value, list):
        raise RowError("not_a_list", field=field_name, value=_show(value))
    out = []
    for i, pair in enumerate(value, 1):
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            q, a = pair
        else:
            raise RowError("bad_history", field=field_name, turn=i, value=_show(pair))
        q, a = _text(q, field_name), _text(a, field_name)
        if not q or not q.strip() or not a or not a.strip():
            raise RowError("bad_history", field=field_name, turn=i, value=_show(pair))
        out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return out


def _answer(value, field_name: str) -> str:
    """A preference answer: plain text, one turn object, or a one-turn list."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict):
        for key in ("content", "value", "text"):
            if key in value:
                role = value.get("role", value.get("from"))
                if role is not None and ROLE_NAMES.get(str(role).strip().lower()) not in _ANSWER_SIDE:
                    raise RowError("unknown_role", field=field_name, turn=1, role=_show(role, 30))
                value = value[key]
                break
        else:
            raise RowError("wrong_type", field=field_name, value=_show(value))
    text = _text(value, field_name)
    if text is None or not text.strip():
        raise RowError("empty_answer", field=field_name)
    return text


def _split_shared_prefix(chosen: list, rejected: list, f: dict):
    """Chosen/rejected given as whole conversations: the shared beginning is the prompt."""
    c_msgs, _ = turns(chosen, f["chosen"])
    r_msgs, _ = turns(rejected, f["rejected"])
    n = 0
    while n < min(len(c_msgs), len(r_msgs)) - 1 and c_msgs[n] == r_msgs[n]:
        n += 1
    if len(c_msgs) != n + 1 or len(r_msgs) != n + 1:
        raise RowError("preference_shape")
    return c_msgs[:n], [c_msgs[n]], [r_msgs[n]]
