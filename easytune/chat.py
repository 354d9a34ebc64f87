"""Talk to a model: a finished job (its adapter on the base, or its full model), a registered model, a folder
holding a merged model, or a folder holding an OpenVINO or GGUF export. Each target says which engine answers
it (`Target.engine`): transformers, OpenVINO, or for a GGUF export llama.cpp where it is installed
(easytune.export.gguf_chat decides).

    target = resolve_target(settings, "20250101-120000-abc123")      # or "easytune-tiny", or a folder
    for text in stream_answer(settings, target, [{"role": "user", "content": "怎么退货？"}]):
        print(text)                                                      # the answer so far, growing

Models load lazily (the first question pays for importing torch) and the last few stay in memory.
One generation runs at a time per process: on a CPU two at once are each slower than one after the other.
Several questions can share that generation instead (`answer_together`): one left-padded batch takes far
less time than its answers one after another, which is how `easytune serve` keeps up with many clients.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from easytune.export.gguf_chat import LLAMA_CPP, TRANSFORMERS, gguf_engine, load_gguf_export
from easytune.i18n import UserError
from easytune.jobs.folder import JobFolder
from easytune.settings import Settings
from easytune.store import open_db

# Defaults for a conversation. 0.7 / 0.9 is the common chat setting (Qwen and Llama instruct models ship
# close to it): answers vary a little but stay on topic. temperature 0 means greedy: the same question
# always gets the same answer, which is what a check of "what did the model learn" wants.
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9  # sample only from the most likely tokens that hold 90% of the probability
DEFAULT_MAX_NEW_TOKENS = 256  # a paragraph: seconds on a CPU for a small model
LIMITS = {"temperature": (0.0, 2.0), "top_p": (0.01, 1.0), "max_new_tokens": (1, 4096)}
MIN_ANSWER_ROOM = 64  # tokens kept free for the answer when a long conversation is cut to fit
ROLES = ("system", "user", "assistant")
OPENVINO_MODEL_FILE = "openvino_model.xml"
OPENVINO = "openvino"  # the engine of an OpenVINO export; TRANSFORMERS and LLAMA_CPP are the others

_lock = threading.Lock()  # one generation at a time: 2 CPU cores gain nothing from more
_load_lock = threading.Lock()  # two requests for the same model load it once


# ---- targets ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """Something to chat with, resolved to files on disk."""

    ref: str  # as the user named it
    kind: str  # job | model | folder | openvino | gguf
    model_path: str  # transformers model folder, the OpenVINO export folder, or a GGUF export's file
    adapter_path: str | None = None  # a LoRA adapter loaded on top of model_path
    engine: str = TRANSFORMERS  # what answers it: transformers | openvino | llama.cpp

    @property
    def name(self) -> str:
        """A short id for lists and the API's `model` field."""
        if self.kind == "gguf":
            return Path(self.model_path).parent.name  # the export's folder, as for the other exports
        return self.ref if self.kind in ("job", "model") else Path(self.model_path).name

    def to_dict(self) -> dict:
        return {**asdict(self), "name": self.name}


def _is_job(settings: Settings, ref: str) -> bool:
    return open_db(settings.db_path)["jobs"].count_where("id = ?", [ref]) > 0


def resolve_target(settings: Settings, target: str | Target) -> Target:
    """A job id, a registered model name (or anything `models` resolves), or a folder -> Target."""
    from easytune.models.registry import resolve_path

    if isinstance(target, Target):
        return target
    ref = (target or "").strip()
    if not ref:
        raise UserError("chat.error.no_target")
    if _is_job(settings, ref):
        return Target(ref, "job", *job_model(settings, ref))
    folder = Path(ref).expanduser()
    if folder.is_dir():
        if (folder / OPENVINO_MODEL_FILE).is_file():
            return Target(ref, "openvino", str(folder.resolve()), engine=OPENVINO)
        gguf = _gguf_export_file(folder)
        if gguf is not None:
            return Target(ref, "gguf", str(gguf.resolve()), engine=gguf_engine())
        if (folder / "adapter_config.json").is_file():  # an adapter on its own names its base model
            config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
            base = resolve_path(settings, config.get("base_model_name_or_path") or "")
            return Target(ref, "folder", base, str(folder.resolve()))
        return Target(ref, "folder", resolve_path(settings, str(folder)))
    try:
        return Target(ref, "model", resolve_path(settings, ref))
    except UserError as exc:
        if exc.key == "models.ref_unknown":
            raise UserError("chat.error.unknown_target", target=ref) from None
        raise


def _gguf_export_file(folder: Path) -> Path | None:
    """The .gguf of a GGUF export folder (one that holds no transformers model beside it)."""
    if (folder / "config.json").is_file():
        return None
    return next((p for p in sorted(folder.glob("*.gguf")) if not p.name.startswith(".")), None)


def job_model(settings: Settings, job_id: str) -> tuple[str, str | None]:
    """(base model folder, adapter folder or None) of a finished job."""
    from easytune.jobs import get_job

    job_dir = Path(get_job(settings, job_id)["job_dir"])
    if (job_dir / "model").is_dir():
        return str(job_dir / "model"), None
    folder = JobFolder(job_dir)
    if not folder.adapter.is_dir():
        raise UserError("chat.error.no_result", job=job_id)
    resolved = folder.resolved()
    return resolved["model_path"], str(folder.adapter)


# ---- loading ---------------------------------------------------------------------------------------

@lru_cache(maxsize=2)
def load_model(model_path: str, adapter_path: str | None):
    """(model, tokenizer) in eval mode, fp32; an adapter is applied on top of its base. Cached."""
    import torch

    from easytune.models.sources import load_safe, load_tokenizer

    tokenizer = load_tokenizer(adapter_path or model_path)
    model = load_safe(model_path, dtype=torch.float32)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    model.eval()
    return model, tokenizer


@lru_cache(maxsize=2)
def load_openvino(folder: str):
    """(OpenVINO model compiled for the CPU, tokenizer) of an exported folder. Cached."""
    if not any((Path(folder) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError("chat.error.no_tokenizer", path=folder)
    try:
        from easytune.openvino_stack import OVModelForCausalLM
    except ImportError as exc:
        raise UserError("chat.error.openvino_missing", detail=str(exc)[:200]) from exc
    from easytune.models.sources import check_code, load_tokenizer

    trusted = check_code(folder)
    return (OVModelForCausalLM.from_pretrained(folder, device="CPU", trust_remote_code=trusted),
            load_tokenizer(folder))


def load_target(target: Target):
    """(model, tokenizer) for a target, from the cache when it was loaded before."""
    with _load_lock:
        if target.kind == "openvino":
            model, tokenizer = load_openvino(target.model_path)
        elif target.kind == "gguf":
            model, tokenizer = load_gguf_export(target.model_path, target.engine)
        else:
            model, tokenizer = load_model(target.model_path, target.adapter_path)
    if not tokenizer.chat_template:  # the template training used for such models, so answers match it
        from easytune.train.sft import DEFAULT_CHAT_TEMPLATE

        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return model, tokenizer


# ---- the prompt ------------------------------------------------------------------------------------

def conversation(messages: str | list[dict], system: str | None = None) -> list[dict]:
    """Checked [{role, content}] ending in the user's question; `system` replaces any system message."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list):
        raise UserError("chat.error.bad_message", index=1)
    turns = []
    for index, message in enumerate(messages, 1):
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise UserError("chat.error.bad_message", index=index)
        turns.append({"role": message["role"], "content": message["content"]})
    if system and system.strip():
        turns = [{"role": "system", "content": system}] + [m for m in turns if m["role"] != "system"]
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise UserError("chat.error.empty")
    return turns


def check_options(temperature: float, top_p: float, max_new_tokens: int) -> None:
    for name, value in (("temperature", temperature), ("top_p", top_p), ("max_new_tokens", max_new_tokens)):
        lo, hi = LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise UserError("chat.error.bad_option", name=name, value=value, lo=lo, hi=hi)
        if name == "max_new_tokens" and int(value) != value:
            raise UserError("chat.error.bad_option", name=name, value=value, lo=lo, hi=hi)


def context_limit(model, tokenizer) -> int | None:
    """The most tokens the model reads at once, where its files say (tokenizers often carry a huge sentinel)."""
    known = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    known = [n for n in known if isinstance(n, int) and 0 < n < 10_000_000]
    return min(known) if known else None


def _render(tokenizer, turns: list[dict]) -> str:
    try:
        return tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # noqa: BLE001 - a model's own Jinja template can refuse a conversation shape
        raise UserError("chat.error.template", detail=str(exc)[:300]) from exc


def fit_prompt(tokenizer, turns: list[dict], max_new_tokens: int, limit: int | None) -> tuple[str, list[int], int]:
    """(prompt text, its token ids, tokens left for the answer). The oldest exchanges are left out when a
    long conversation would not fit; the system message and the last question always stay."""
    system = turns[:1] if turns[0]["role"] == "system" else []
    rest = turns[len(system):]
    while True:
        prompt = _render(tokenizer, system + rest)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if limit is None or len(ids) + min(max_new_tokens, MIN_ANSWER_ROOM) <= limit:
            break
        later = next((i for i in range(1, len(rest)) if rest[i]["role"] == "user"), None)
        if later is None:
            raise UserError("chat.error.too_long", tokens=len(ids), limit=limit)
        rest = rest[later:]
    room = max_new_tokens if limit is None else min(max_new_tokens, limit - len(ids))
    return prompt, ids, room


def chat_prompt(settings: Settings, target: str | Target, messages: str | list[dict], *,
                system: str | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> str:
    """The exact text the model reads for this conversation (after any cut to fit its context)."""
    model, tokenizer = load_target(resolve_target(settings, target))
    return fit_prompt(tokenizer, conversation(messages, system), max_new_tokens, context_limit(model, tokenizer))[0]


# ---- generating ------------------------------------------------------------------------------------

class PreparedAnswer:
    """Everything one generation needs, checked before any thread starts."""

    def __init__(self, target: Target, messages, system, temperature, top_p, max_new_tokens):
        check_options(temperature, top_p, max_new_tokens)
        self.target = target
        turns = conversation(messages, system)
        self.model, self.tokenizer = load_target(target)
        limit = context_limit(self.model, self.tokenizer)
        self.prompt, self.prompt_ids, self.max_new_tokens = fit_prompt(self.tokenizer, turns, int(max_new_tokens),
                                                                       limit)
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos)
        pad = self.tokenizer.pad_token_id
        sampling = ({"do_sample": True, "temperature": float(temperature), "top_p": float(top_p)}
                    if temperature > 0 else {"do_sample": False})
        self.options = {"max_new_tokens": self.max_new_tokens, "eos_token_id": self.eos_ids,
                        "pad_token_id": pad if pad is not None else self.eos_ids[0], **sampling}
        self.temperature, self.top_p = float(temperature), float(top_p)
        self.engine = target.engine
        self.batchable = self.engine == TRANSFORMERS  # padded batches are checked on transformers models only
        self.sampling = (self.model, *sorted(sampling.items()))  # answers generated together share these

    def inputs(self) -> dict:
        import torch

        ids = torch.tensor([self.prompt_ids])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def llama_cpp_tokens(self):
        """The answer's tokens from llama.cpp, one at a time (the caller holds the generation lock)."""
        return self.model.tokens(self.prompt_ids, temperature=self.temperature, top_p=self.top_p,
                                 max_new_tokens=self.max_new_tokens, eos_ids=self.eos_ids)

    def finished(self, new_tokens: list[int]) -> Answer:
        """The answer made of the tokens generated after the prompt (any padding after its end is dropped)."""
        tokens = new_tokens[:self.max_new_tokens]
        end = next((i for i, token in enumerate(tokens) if token in self.eos_ids), None)
        if end is not None:
            tokens = tokens[:end + 1]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return Answer(text, len(self.prompt_ids), len(tokens), "stop" if end is not None else "length", self.engine)


@dataclass(frozen=True)
class Answer:
    """One whole answer and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int  # the end-of-answer token included, as a streamed answer counts it
    finish_reason: str  # "stop": the model finished; "length": max_new_tokens ran out
    engine: str = TRANSFORMERS  # what answered: transformers | openvino | llama.cpp


def prepare_answer(settings: Settings, target: str | Target, messages: str | list[dict], *,
                   system: str | None = None, temperature: float = DEFAULT_TEMPERATURE, top_p: float = DEFAULT_TOP_P,
                   max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> PreparedAnswer:
    """A checked question, ready for `answer_together` or `AnswerStream`.

    Everything a user can get wrong (an empty question, an unknown target, settings out of range, a
    conversation too long for the model) raises UserError here, before anything is generated.
    """
    resolved = resolve_target(settings, target)
    return PreparedAnswer(resolved, messages, system, temperature, top_p, max_new_tokens)


def left_padded(rows: list[list[int]], pad: int, device=None):
    """(input_ids, attention_mask) of token rows of different lengths, padded on the left: a decoder-only
    model then continues every row from its last real token, and the mask keeps the padding unread."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows], device=device)
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=device)
    return ids, mask


class RowLimits:
    """A stopping criterion: each row of a batch stops at its own max_new_tokens."""

    def __init__(self, prompt_width: int, limits: list[int]):
        self.prompt_width, self.limits = prompt_width, limits

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        made = input_ids.shape[1] - self.prompt_width
        return torch.tensor([made >= limit for limit in self.limits], dtype=torch.bool, device=input_ids.device)


def answer_together(prepared: list[PreparedAnswer]) -> list[Answer]:
    """Whole answers to several questions, generated as one batch. They must share a model and sampling
    settings (equal `sampling`); greedy answers are the ones each question gets alone."""
    from transformers import StoppingCriteriaList

    first = prepared[0]
    if any(p.sampling != first.sampling for p in prepared):
        raise ValueError("answers generated together must share the model and the sampling settings")
    if first.engine == LLAMA_CPP:  # one after another: llama.cpp's Python binding decodes one sequence
        with _lock:
            return [p.finished(list(p.llama_cpp_tokens())) for p in prepared]
    ids, mask = left_padded([p.prompt_ids for p in prepared], first.options["pad_token_id"])
    limits = [p.max_new_tokens for p in prepared]
    options = {**first.options, "max_new_tokens": max(limits)}
    if len(set(limits)) > 1:
        options["stopping_criteria"] = StoppingCriteriaList([RowLimits(ids.shape[1], limits)])
    with _lock:
        out = first.model.generate(input_ids=ids, attention_mask=mask, **options)
    return [p.finished(out[row, ids.shape[1]:].tolist()) for row, p in enumerate(prepared)]


def answer(model_path: str, adapter_path: str | None, question: str, *, system: str | None = None,
           max_new_tokens: int = 128, temperature: float = 0.0) -> str:
    """One whole answer to one question, without streaming (greedy unless temperature > 0)."""
    kind = "openvino" if (Path(model_path) / OPENVINO_MODEL_FILE).is_file() else "model"
    target = Target(model_path, kind, model_path, adapter_path, engine=OPENVINO if kind == "openvino" else TRANSFORMERS)
    prepared = PreparedAnswer(target, question, system, temperature, DEFAULT_TOP_P, max_new_tokens)
    return answer_together([prepared])[0].text


def ask_job(settings: Settings, job_id: str, question: str, **options) -> str:
    return answer(*job_model(settings, job_id), question, **options)


def ask_base(settings: Settings, model: str, question: str, **options) -> str:
    from easytune.models.registry import resolve_path

    return answer(resolve_path(settings, model), None, question, **options)


class _TokenTap:
    """Passes generated tokens on to the text streamer and keeps them, for usage counts and finish reason."""

    def __init__(self, streamer):
        self.streamer, self.tokens, self._prompt_seen, self._ended = streamer, [], False, False

    def put(self, value) -> None:
        if self._prompt_seen:
            self.tokens.extend(value.reshape(-1).tolist())
        self._prompt_seen = True
        self.streamer.put(value)

    def end(self) -> None:
        if not self._ended:  # generate ends it; the thread ends it again after an error
            self._ended = True
            self.streamer.end()


class _StopWhen:
    """A stopping criterion: stop generating once nobody reads the answer any more."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class AnswerStream:
    """Iterates over the growing answer text. Once it ends: `text`, `prompt_tokens`, `completion_tokens`,
    and `finish_reason` ("stop": the model finished; "length": max_new_tokens ran out). `close()` stops
    generating early (a closed browser tab, a dropped API client)."""

    def __init__(self, target: Target, prepared: PreparedAnswer):
        self.target, self.prepared = target, prepared
        self.text, self.completion_tokens, self.finish_reason = "", 0, None
        self.engine = prepared.engine
        self.prompt_tokens = len(prepared.prompt_ids)
        self._cancel = threading.Event()
        self._steps = self._generate_llama_cpp() if self.engine == LLAMA_CPP else self._generate()

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return next(self._steps)

    def close(self) -> None:
        self._cancel.set()
        self._steps.close()

    def _generate(self):
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        prepared = self.prepared
        streamer = TextIteratorStreamer(prepared.tokenizer, skip_prompt=True, skip_special_tokens=True)
        tap = _TokenTap(streamer)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with _lock:
                    if not self._cancel.is_set():  # the reader may have left while another answer ran
                        prepared.model.generate(**prepared.inputs(), **prepared.options, streamer=tap,
                                                stopping_criteria=StoppingCriteriaList([_StopWhen(self._cancel)]))
            except BaseException as exc:  # noqa: BLE001 - handed to the reader, who raises it
                failure.append(exc)
            finally:
                tap.end()  # the reader always wakes up, whatever happened here

        worker = threading.Thread(target=run, name="easytune-generate", daemon=True)
        worker.start()
        raw = ""
        try:
            for piece in streamer:
                raw += piece
                shown = raw.strip()
                if len(shown) > len(self.text):
                    self.text = shown
                    yield shown
            worker.join()
        finally:
            self._cancel.set()  # a reader that stops early (close, GeneratorExit) stops the generation too
        if failure:
            raise failure[0]
        self.completion_tokens = len(tap.tokens)
        self.finish_reason = "stop" if tap.tokens and tap.tokens[-1] in prepared.eos_ids else "length"

    def _generate_llama_cpp(self):
        """As _generate, with llama.cpp's tokens: generated in a thread of their own (a reader that walks away
        never holds the model), the text shown decoded by the same tokenizer as the whole answer."""
        prepared = self.prepared
        made: queue.SimpleQueue = queue.SimpleQueue()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with _lock:
                    for token in ([] if self._cancel.is_set() else prepared.llama_cpp_tokens()):
                        made.put(token)
                        if self._cancel.is_set():
                            break
            except BaseException as exc:  # noqa: BLE001 - handed to the reader, who raises it
                failure.append(exc)
            finally:
                made.put(None)  # the reader always wakes up, whatever happened here

        worker = threading.Thread(target=run, name="easytune-generate", daemon=True)
        worker.start()
        tokens: list[int] = []
        try:
            while (token := made.get()) is not None:
                tokens.append(token)
                shown = prepared.tokenizer.decode(tokens, skip_special_tokens=True)
                if not shown.endswith("\ufffd") and len(shown.strip()) > len(self.text):  # not half a character
                    self.text = shown.strip()
                    yield self.text
            worker.join()
        finally:
            self._cancel.set()  # a reader that stops early (close, GeneratorExit) stops the generation too
        if failure:
            raise failure[0]
        whole = prepared.finished(tokens)
        if len(whole.text) > len(self.text):  # a last character held back above
            self.text = whole.text
            yield self.text
        self.completion_tokens, self.finish_reason = whole.completion_tokens, whole.finish_reason


def stream_answer(settings: Settings, target: str | Target, messages: str | list[dict], *,
                  system: str | None = None, temperature: float = DEFAULT_TEMPERATURE, top_p: float = DEFAULT_TOP_P,
                  max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> AnswerStream:
    """Answer the last user message of a conversation, yielding the answer text as it grows.
    Raises UserError before anything is generated, as `prepare_answer` does."""
    prepared = prepare_answer(settings, target, messages, system=system, temperature=temperature, top_p=top_p,
                              max_new_tokens=max_new_tokens)
    return AnswerStream(prepared.target, prepared)
