"""Managing what is here: fixing a dataset's field mapping, renaming, the dashboard numbers, and the
wizard's place surviving a restart."""

import json

from support import cli, cli_json


def write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_unrecognised_columns_are_imported_with_a_hand_made_mapping(home, tmp_path):
    source = write_csv(tmp_path / "faq.csv",
                       "客户说,客服回\n几点发货,下午四点前付款当天发货。\n能退货吗,七天内可以无理由退货。\n")
    refused = cli("data", "add", str(source), "--json", home=home, check=False)
    assert refused.returncode == 2 and json.loads(refused.stdout.splitlines()[0])["error"] == "data.unknown_columns"
    assert cli_json("data", "list", home=home) == []  # nothing half-imported

    added = cli_json("data", "add", str(source), "--map", "prompt=客户说", "--map", "response=客服回", home=home)
    assert added["dataset"]["rows"] == 2
    exported = tmp_path / "out.jsonl"
    cli("data", "export", added["dataset"]["id"], "--out", str(exported), home=home)
    pairs = {tuple(m["content"] for m in json.loads(line)["messages"]) for line in exported.read_text().splitlines()}
    assert pairs == {("几点发货", "下午四点前付款当天发货。"), ("能退货吗", "七天内可以无理由退货。")}


def test_remap_replaces_the_rows_and_keeps_the_name(home, tmp_path):
    source = write_csv(tmp_path / "qa.csv", "question,answer,better\n"
                       + "".join(f"q{i}?,short {i},a much better answer number {i}\n" for i in range(12)))
    first = cli_json("data", "add", str(source), "--name", "support", home=home)["dataset"]
    assert first["rows"] == 12

    fixed = cli_json("data", "reimport", first["id"], "--map", "prompt=question", "--map", "response=better",
                     home=home)
    assert fixed["dataset"]["name"] == "support" and fixed["dataset"]["id"] != first["id"]
    listed = cli_json("data", "list", home=home)
    assert [d["name"] for d in listed] == ["support"]  # the old rows are gone, one dataset remains
    exported = tmp_path / "out.jsonl"
    cli("data", "export", "support", "--out", str(exported), home=home)
    answers = [json.loads(line)["messages"][-1]["content"] for line in exported.read_text().splitlines()]
    assert len(answers) == 12 and all(a.startswith("a much better answer") for a in answers)

    missing = cli("data", "reimport", "support", home=home, check=False)
    assert missing.returncode == 2 and "--map" in missing.stderr


def test_rename_and_the_dashboard_counts(home, tmp_path):
    source = write_csv(tmp_path / "qa.csv", "question,answer\n" + "".join(f"q{i},a{i}\n" for i in range(5)))
    added = cli_json("data", "add", str(source), home=home)["dataset"]
    assert cli_json("data", "rename", added["id"], "--name", "客服问答", home=home)["name"] == "客服问答"

    status = cli_json("status", home=home)
    assert status["counts"] == {"datasets": 1, "models": 1, "jobs": 0, "running": 0, "exports": 0}
    assert status["resources"]["ram_total"] > status["resources"]["ram_used"] > 0
    assert "1 datasets" in cli("status", home=home).stdout
    assert "1 个数据集" in cli("--lang", "zh", "status", home=home).stdout  # options may come before the command


def test_the_wizard_position_survives_a_restart(settings):
    from easytune.store import open_db
    from easytune.ui import state

    state.remember(settings, step="plan", dataset="demo:shop_faq_en", level="L1", lang="en", unknown="x")
    open_db(settings.db_path).conn.close()
    assert state.recall(settings) == {"step": "plan", "dataset": "demo:shop_faq_en", "level": "L1", "lang": "en"}
    state.remember(settings, step="monitor")
    assert state.recall(settings)["step"] == "monitor"


def test_each_browser_tab_keeps_its_own_place_and_shares_the_language(settings):
    from easytune.ui import state

    state.remember(settings, "tab-a", step="plan", dataset="demo:shop_faq_en", job="job-1")
    assert state.recall(settings, "tab-b")["step"] == "plan"  # a new tab starts where the last one was
    state.remember(settings, "tab-b", step="data")
    assert state.recall(settings, "tab-b") == {"step": "data", "dataset": "demo:shop_faq_en", "job": "job-1"}
    state.remember(settings, "tab-a", job="job-2", lang="zh")
    assert state.recall(settings, "tab-a") == {"step": "plan", "dataset": "demo:shop_faq_en", "job": "job-2",
                                               "lang": "zh"}
    assert state.recall(settings, "tab-b") == {"step": "data", "dataset": "demo:shop_faq_en", "job": "job-1",
                                               "lang": "zh"}


def test_token_lengths_use_the_models_tokenizer_and_count_rows_over_its_context(home, tmp_path):
    long_answer = "很长的回答。" * 200  # well over the tiny model's 512-token context
    rows = [{"messages": [{"role": "user", "content": f"问题{i}"}, {"role": "assistant", "content": "好的。"}]}
            for i in range(9)]
    rows.append({"messages": [{"role": "user", "content": "长问题"}, {"role": "assistant", "content": long_answer}]})
    source = tmp_path / "chat.jsonl"
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    dataset = cli_json("data", "add", str(source), home=home)["dataset"]["id"]

    result = cli_json("data", "tokens", dataset, "--model", "easytune-tiny", home=home)
    assert result["context"] == 512
    assert result["over_context"] >= 1 and result["max"] > 512
    assert result["p50"] < 30  # short chats stay short in tokens
    assert sum(b["count"] for b in result["histogram"]) == result["rows"]
    assert "512" in cli("data", "tokens", dataset, home=home).stdout


def test_reimport_can_mask_personal_data_and_leave_out_duplicates(home, tmp_path):
    lines = ["question,answer"] + [f"q{i},a{i}" for i in range(10)] + ["q1,a1", "q2,a2"]
    lines.append("how to reach you,call 13812345678 or write to li.lei@example.com")
    source = write_csv(tmp_path / "qa.csv", "\n".join(lines) + "\n")
    added = cli_json("data", "add", str(source), home=home)
    quality = added["report"]["quality"]
    assert quality["duplicates"]["exact"] == 2 and quality["pii"]["rows"] == 1

    cleaned = cli_json("data", "reimport", added["dataset"]["id"], "--mask-pii", "--drop-duplicates", home=home)
    assert cleaned["dataset"]["rows"] == added["dataset"]["rows"] - 2
    out = tmp_path / "out.jsonl"
    cli("data", "export", cleaned["dataset"]["id"], "--out", str(out), home=home)
    text = out.read_text(encoding="utf-8")
    assert "13812345678" not in text and "li.lei@example.com" not in text
    assert (home / "uploads" / cleaned["dataset"]["id"] / "qa.csv").read_text() == source.read_text()  # kept as is
