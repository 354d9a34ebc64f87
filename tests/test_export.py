"""Exports of the shared demo job, made for real and loaded as a user would: transformers for the merged
model, peft for the adapter, OpenVINO for INT8/INT4. Each test home is a private copy of the demo home's
database (the job folder itself is only read), so exports and safety rows made here stay here."""

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from support import ROOT, cli, cli_json

pytestmark = pytest.mark.slow
FORMATS = ("merged", "adapter", "openvino-int8", "openvino-int4")
FAQ = ROOT / "assets" / "demo" / "shop_faq_zh.jsonl"


def private_home(demo_home: Path, path: Path) -> Path:
    """The demo job's records, with nothing evaluated or exported yet (whatever other tests stored)."""
    path.mkdir(parents=True)
    with sqlite3.connect(demo_home / "easytune.db") as source, sqlite3.connect(path / "easytune.db") as copy:
        source.backup(copy)
        copy.execute("delete from evaluations")
        copy.execute("delete from exports")
    return path


def settings_for(home: Path):
    from easytune.settings import load_settings

    return load_settings(home=home, language="en")


def questions(start: int, count: int) -> list[str]:
    rows = FAQ.read_text(encoding="utf-8").splitlines()[start:start + count]
    return [json.loads(row)["messages"][0]["content"] for row in rows]


def greedy(model, tokenizer, question: str) -> str:
    import torch

    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=64, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def job_answers(settings, job_id: str, asked: list[str]) -> list[str]:
    """The trained PyTorch job model (adapter on its base), as the app's chat loads it."""
    from easytune.chat import job_model, load_model

    model, tokenizer = load_model(*job_model(settings, job_id))
    return [greedy(model, tokenizer, q) for q in asked]


@pytest.fixture(scope="module")
def exported(demo_job, tmp_path_factory):
    """(home, job id, {format: export result}) — all four formats of the demo job, one private home."""
    from easytune.export import export_job

    demo_home, job = demo_job
    home = private_home(demo_home, tmp_path_factory.mktemp("export") / "home")
    settings = settings_for(home)
    seen: list[tuple[float, str]] = []
    results = {fmt: export_job(settings, job["id"], fmt, lang="zh" if fmt == "openvino-int4" else "en",
                               progress=lambda fraction, key: seen.append((fraction, key)))
               for fmt in FORMATS}
    assert [key for _, key in seen].count("export.progress.done") == 4
    assert all(0 <= fraction <= 1 for fraction, _ in seen)
    return home, job["id"], results


def test_merged_model_loads_with_transformers_alone_and_answers_like_the_adapter(exported):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home, job_id, results = exported
    result = results["merged"]
    folder = Path(result["path"])
    assert result["state"] == "READY" and result["verified"]
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert not (folder / "adapter_config.json").exists() and not list(folder.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template, "the chat template travels with the merged model"
    asked = questions(3, 3)
    assert [greedy(model, tokenizer, q) for q in asked] == job_answers(settings_for(home), job_id, asked)
    check = result["verification"]
    assert check["identical"] == check["total"] == 3 and check["agreement"] == 1.0
    assert [p["identical"] for p in check["prompts"]] == [True] * 3


def test_adapter_package_loads_with_peft_on_the_base(exported):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home, job_id, results = exported
    folder = Path(results["adapter"]["path"])
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= {
        p.name for p in folder.iterdir()}
    base = AutoModelForCausalLM.from_pretrained(ROOT / "assets" / "tiny-model", dtype=torch.float32)
    model = PeftModel.from_pretrained(base, folder).eval()
    asked = questions(6, 2)
    assert [greedy(model, AutoTokenizer.from_pretrained(folder), q) for q in asked] == job_answers(
        settings_for(home), job_id, asked)
    assert results["adapter"]["verification"]["identical"] == 3


def test_openvino_int8_answers_exactly_like_pytorch_and_carries_its_tokenizer(exported):
    """Every answer the model learned comes out token for token the same. (Where the fp32 model itself is
    unsure between two tokens, 8-bit rounding may tip it: 60 of the 62 FAQ answers match in all.)"""
    import openvino as ov
    import openvino_tokenizers  # noqa: F401 — registers the tokenizer operations
    from optimum.intel import OVModelForCausalLM
    from transformers import AutoTokenizer

    home, job_id, results = exported
    result = results["openvino-int8"]
    folder = Path(result["path"])
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        assert (folder / name).is_file(), name
    model = OVModelForCausalLM.from_pretrained(folder, ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = [json.loads(line)["messages"] for line in FAQ.read_text(encoding="utf-8").splitlines()[3:9]]
    asked = [messages[0]["content"] for messages in rows]
    pytorch = job_answers(settings_for(home), job_id, asked)
    learned = [(q, a) for q, a, messages in zip(asked, pytorch, rows) if a == messages[1]["content"]]
    assert len(learned) >= 3, pytorch
    assert [greedy(model, tokenizer, q) for q, _ in learned] == [a for _, a in learned]
    # The converted tokenizer runs with OpenVINO alone and encodes as the original does.
    encode = ov.Core().compile_model(folder / "openvino_tokenizer.xml")
    assert encode([asked[0]])["input_ids"][0].tolist() == tokenizer(asked[0])["input_ids"]
    check = result["verification"]
    assert check["identical"] == 3
    assert check["openvino"]["tokenizer_matches"] and check["openvino"]["detokenizer_matches"]
    assert result["quantization"] == {"bits": 8, "sym": False}


def test_openvino_int4_answers_within_its_stated_tolerance(exported):
    from optimum.intel import OVModelForCausalLM
    from transformers import AutoTokenizer

    _, _, results = exported
    result = results["openvino-int4"]
    folder = Path(result["path"])
    assert (folder / "openvino_tokenizer.xml").is_file() and (folder / "openvino_detokenizer.xml").is_file()
    model = OVModelForCausalLM.from_pretrained(folder)
    assert greedy(model, AutoTokenizer.from_pretrained(folder), questions(0, 1)[0]).strip()
    check = result["verification"]
    assert check["agreement"] >= check["threshold"] == 0.8, check
    assert result["quantization"]["bits"] == 4 and result["quantization"]["group_size"] == 32
    int8 = Path(results["openvino-int8"]["path"]) / "openvino_model.bin"
    assert (folder / "openvino_model.bin").stat().st_size < int8.stat().st_size


def test_model_card_says_where_the_model_came_from_and_how_to_run_it(exported):
    _, job_id, results = exported
    card = (Path(results["merged"]["path"]) / "README.md").read_text(encoding="utf-8")
    resolved = json.loads(Path(results["merged"]["path"], "easytune_export.json").read_text())
    assert resolved["job_id"] == job_id and resolved["verification"]["passed"]
    for text in ("easytune-tiny", "demo:shop_faq_zh", "62 rows", "lora_r: 8", "Final training loss",
                 "Forgetting score", "Not evaluated yet.", "3 of 3 identical", "AutoModelForCausalLM",
                 f"easytune serve {results['merged']['path']}", "| transformers |"):
        assert text in card, text
    sha = next(line for line in card.splitlines() if "sha256" in line)
    assert len(sha.split("`")[1]) == 64
    zh = (Path(results["openvino-int4"]["path"]) / "README.md").read_text(encoding="utf-8")
    assert "## 基座模型" in zh and "尚未评估" in zh and "OVModelForCausalLM" in zh
    from easytune.i18n import t

    assert f"lora_r: 8  # {t('plan.field.lora_r', 'zh')}" in zh  # the plan's comments in the card's language


def test_exports_list_shows_them_ready_with_sizes(exported):
    home, job_id, results = exported
    listed = {row["format"]: row for row in cli_json("exports", "list", home=home)}
    assert set(listed) == set(FORMATS)
    for fmt, row in listed.items():
        folder = Path(row["path"])
        assert row["state"] == "READY" and row["verified"] and row["tokens_per_s"] > 0, row
        assert row["size_bytes"] == sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        assert row["id"] == results[fmt]["id"] and folder == Path(home, "exports", job_id, fmt)
    assert not [p for p in Path(home, "exports", job_id).iterdir() if p.name.startswith(".")], "no staging left"
    human = cli("exports", "list", home=home).stdout
    assert "openvino-int4" in human and "Ready" in human


def test_a_folder_export_downloads_as_a_zip_of_its_files(exported):
    """What the Exports page hands the browser: a zip in the home's downloads folder holding every file of
    the adapter, byte for byte; made once; an unknown export is refused by name."""
    import zipfile

    from easytune.export.download import download_file
    from easytune.i18n import UserError

    home, job_id, results = exported
    settings = settings_for(home)
    folder = Path(results["adapter"]["path"])
    archive = download_file(settings, results["adapter"]["id"])
    assert archive.parent == Path(home, "downloads") and archive.suffix == ".zip"
    with zipfile.ZipFile(archive) as z:
        files = {name: z.read(name) for name in z.namelist()}
    assert files == {f"{folder.name}/{f.relative_to(folder)}": f.read_bytes() for f in folder.rglob("*") if f.is_file()}
    made = archive.stat().st_mtime_ns
    assert download_file(settings, results["adapter"]["id"]) == archive and archive.stat().st_mtime_ns == made
    with pytest.raises(UserError) as refused:
        download_file(settings, "nope")
    assert refused.value.key == "export.error.unknown"


def test_removing_an_export_deletes_its_folder(exported):
    home, job_id, results = exported
    removed = cli_json("exports", "rm", results["openvino-int4"]["id"], home=home)
    assert removed["deleted_folder"] and not Path(results["openvino-int4"]["path"]).exists()
    assert "openvino-int4" not in {row["format"] for row in cli_json("exports", "list", home=home)}
    missing = cli("exports", "rm", "nope", home=home, check=False)
    assert missing.returncode == 2 and "No export with id nope" in missing.stderr


def test_flagged_job_is_refused_unless_confirmed_and_the_confirmation_is_recorded(demo_job, tmp_path):
    demo_home, job = demo_job
    home = private_home(demo_home, tmp_path / "home")
    with sqlite3.connect(home / "easytune.db") as db:
        db.executemany("insert into evaluations (id, job_id, kind, passed, result, created_at) "
                       "values (?, ?, ?, ?, ?, ?)",
                       [("quality-1", job["id"], "quality", 1, json.dumps({"verdict": "improved"}), time.time()),
                        ("safety-1", job["id"], "safety", 0,
                         json.dumps({"summary": "refused 10% of harmful requests (base 90%)"}), time.time())])
    refused = cli("export", job["id"], "--format", "adapter", home=home, check=False)
    assert refused.returncode == 2 and "--confirm-unsafe" in refused.stderr
    assert json.loads(cli("export", job["id"], "--format", "adapter", "--json", home=home,
                          check=False).stdout)["error"] == "export.error.unsafe"
    assert cli_json("exports", "list", home=home) == []

    out = tmp_path / "mine" / "adapter"
    done = cli("export", job["id"], "--format", "adapter", "--confirm-unsafe", "--out", str(out), home=home)
    assert "100%" in done.stderr and str(out) in done.stdout  # progress on stderr, the result on stdout
    [row] = cli_json("exports", "list", home=home)
    assert row["state"] == "READY" and row["safety_confirmed"] and row["path"] == str(out)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "refused 10% of harmful requests" in card and "explicitly confirmed" in card
    assert "Verdict: improved (passed: yes)" in card
    # An export written outside the app's exports folder is forgotten, never deleted.
    forgotten = cli_json("exports", "rm", row["id"], home=home)
    assert not forgotten["deleted_folder"] and (out / "adapter_model.safetensors").is_file()


def test_failed_export_leaves_no_complete_folder_and_a_failed_row(demo_job, tmp_path):
    from easytune.export import export_job, list_exports
    from easytune.i18n import UserError

    demo_home, job = demo_job
    home = private_home(demo_home, tmp_path / "home")
    settings = settings_for(home)
    with pytest.raises(UserError) as disk:
        export_job(settings, job["id"], "merged", keep_free_bytes=2**60)  # more than any disk has free
    assert disk.value.key == "export.error.disk"
    assert "needs about" in disk.value.message("en") and disk.value.params["free"]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError) as unwritable:
        export_job(settings, job["id"], "openvino-int8", out_dir=blocker / "int8")
    assert unwritable.value.key == "export.error.write"
    rows = list_exports(settings, job["id"])
    assert [(r["state"], r["error"]["key"]) for r in rows] == [("FAILED", "export.error.write"),
                                                               ("FAILED", "export.error.disk")]
    exports = home / "exports"
    assert not exports.exists() or not [p for p in exports.rglob("*") if p.is_file()]
    assert blocker.read_text() == "not a folder"


def test_full_fine_tune_has_no_adapter_to_export_but_exports_merged(demo_job, tmp_path):
    """A job folder whose result is `model/` (a full fine-tune; here the tiny model itself stands in for it)."""
    from easytune.export import export_job
    from easytune.i18n import UserError

    demo_home, job = demo_job
    home = private_home(demo_home, tmp_path / "home")
    job_dir = tmp_path / "full-job"
    shutil.copytree(ROOT / "assets" / "tiny-model", job_dir / "model")
    for name in ("plan.yaml", "job.json"):
        shutil.copy(Path(job["job_dir"]) / name, job_dir / name)
    with sqlite3.connect(home / "easytune.db") as db:
        db.execute("insert into jobs (id, name, state, model, dataset, job_dir, created_at, finished_at) "
                   "values (?, ?, ?, ?, ?, ?, ?, ?)", ["full-1", "full", "COMPLETED", "easytune-tiny",
                                                       "demo:shop_faq_zh", str(job_dir), time.time(), time.time()])
    settings = settings_for(home)
    with pytest.raises(UserError) as refused:
        export_job(settings, "full-1", "adapter")
    assert refused.value.key == "export.error.no_adapter" and "full fine-tune" in refused.value.message("en")
    merged = export_job(settings, "full-1", "merged")
    assert merged["verified"] and merged["verification"]["identical"] == 3
    weights = (Path(merged["path"]) / "model.safetensors").read_bytes()
    assert weights == (job_dir / "model" / "model.safetensors").read_bytes()
