"""Copies of each question with some of its words left out, the answer the same (jobs/question_variants.py):
written with the training rows when a job is created with question_variants above 0, never otherwise."""

import json
from pathlib import Path

from easytune.jobs.question_variants import MIN_KEPT, with_question_variants
from support import ROOT

FAQ = ROOT / "assets" / "demo" / "shop_faq_en.jsonl"


def row(question: str, answer: str = "Within 45 days.", system: str | None = None) -> dict:
    turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"kind": "sft", "messages": ([{"role": "system", "content": system}] if system else []) + turns,
            "line": 1}


def written(tmp_path, rows: list[dict], count: int, seed: int = 0) -> tuple[list[dict], int, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "train.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out, added, _ = with_question_variants(source, count, seed, tmp_path / "data")
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()], added, out


def test_each_question_gets_copies_with_words_left_out_and_the_same_answer(tmp_path):
    asked = "How long do I have to return an item I bought online?"
    other = row("What is the return window at Lumen & Pine?", system="You answer for the shop.")
    rows, added, _ = written(tmp_path, [row(asked, system="You answer for the shop."), other], count=2)
    assert added == 4 and rows[:2] == [row(asked, system="You answer for the shop."), other]
    copies = [r["messages"][1]["content"] for r in rows[2:4]]
    assert len(set(copies)) == 2 and asked not in copies
    original = asked.rstrip("?").split()
    for copy in copies:
        words = copy.rstrip("?").split()
        assert copy.endswith("?") and MIN_KEPT <= len(words) < len(original)
        rest = iter(original)
        assert all(word in rest for word in words)  # words left out, none added or reordered
    assert all(r["messages"][0]["content"] == "You answer for the shop." for r in rows)
    assert all(r["messages"][2]["content"] == "Within 45 days." for r in rows)


def test_an_answer_asked_one_way_only_gets_twice_the_copies(tmp_path):
    """Its copies stand in for the second question it lacks. Answers stating the same facts in mostly the same
    words count as one answer asked two ways, as the import's count of ways asked has it."""
    rows = [row("How long do I have to return an item?", "You can return any item within 45 days."),
            row("What is the return window at Lumen & Pine?", "Any item can be returned within 45 days."),
            row("Which courier delivers my parcels?", "Parcels go out with Nordpost.")]
    out, added, _ = written(tmp_path, rows, count=2)
    answers = [r["messages"][1]["content"] for r in out[3:]]
    assert added == 8
    assert answers.count("Parcels go out with Nordpost.") == 4
    assert answers.count("You can return any item within 45 days.") == 2


def test_a_question_held_out_for_validation_still_counts_as_a_way_the_answer_is_asked(tmp_path):
    """The split leaves the answer one question in training; the data asks it two ways, as the import counts and
    the plan sizes the run, so its copies stay two (more cost facts asked otherwise on the benchmark's shop set)."""
    rows = [row("How long do I have to return an item?"), row("Which courier delivers my parcels?", "Nordpost.")]
    held = tmp_path / "val.jsonl"
    held.write_text(json.dumps(row("What is the return window at Lumen & Pine?")) + "\n", encoding="utf-8")
    source = tmp_path / "train.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out, added, one_way = with_question_variants(source, 2, 0, tmp_path / "data", held_out=held)
    answers = [json.loads(line)["messages"][1]["content"] for line in out.read_text().splitlines()][2:]
    assert (added, one_way) == (6, 1)
    assert answers.count("Within 45 days.") == 2 and answers.count("Nordpost.") == 4


def test_the_same_seed_writes_the_same_copies(tmp_path):
    first, _, _ = written(tmp_path / "a", [row("What is the return window at Lumen & Pine?")], count=3, seed=7)
    again, _, _ = written(tmp_path / "b", [row("What is the return window at Lumen & Pine?")], count=3, seed=7)
    assert first == again


def test_short_and_multi_turn_questions_are_left_as_they_are(tmp_path):
    conversation = row("Do you ship to Norway at all?")
    conversation["messages"] += [{"role": "user", "content": "And how long does it take to get there?"},
                                 {"role": "assistant", "content": "About a week."}]
    rows = [row("Opening hours?"), row("退货期限？"), conversation]
    out_rows, added, out = written(tmp_path, rows, count=2)
    assert added == 0 and out == tmp_path / "train.jsonl" and out_rows == rows


def test_a_chinese_question_loses_pieces_of_two_characters_and_keeps_its_code_whole(tmp_path):
    asked = "我以前从没买过，结账时输入什么码YUN8可以省钱？"
    rows, added, _ = written(tmp_path, [row(asked, answer="新顾客输入优惠码YUN8，首单九折。")], count=2)
    copies = [r["messages"][0]["content"] for r in rows[1:]]
    assert added == 4 and len(set(copies)) == 4 and asked not in copies  # asked one way: twice as many
    pieces = ["我以", "前从", "没买", "过", "，", "结账", "时输", "入什", "么码", "YUN8", "可以", "省钱"]
    for copy in copies:
        assert copy.endswith("？") and " " not in copy and len(copy) < len(asked)
        kept = copy[:-1]
        for piece in pieces:  # whole pieces left out, the rest in order, nothing added
            if kept.startswith(piece):
                kept = kept[len(piece):]
        assert kept == ""
    assert all(r["messages"][1]["content"] == "新顾客输入优惠码YUN8，首单九折。" for r in rows)


def test_a_job_created_with_copies_trains_on_them_and_records_how_many(settings):
    from easytune import datasets, jobs
    from easytune.plan.schema import TrainingPlan

    dataset = datasets.add_dataset(settings, FAQ, name="faq", val_ratio=0.1)["dataset"]
    plan = TrainingPlan.load(ROOT / "presets" / "demo.yaml")
    plan.dataset, plan.question_variants = dataset["id"], 2
    resolved = json.loads((Path(jobs.create_job(settings, plan)["job_dir"]) / "job.json").read_text())
    trained = [json.loads(line) for line in Path(resolved["train_file"]).read_text().splitlines()]
    asked = {json.loads(line)["messages"][0]["content"] for line in FAQ.read_text().splitlines() if line.strip()}
    originals = [r for r in trained if r["messages"][0]["content"] in asked]
    assert resolved["question_variant_rows"] > 0
    assert len(trained) == len(originals) + resolved["question_variant_rows"]
    validated = {json.loads(line)["messages"][0]["content"]
                 for line in Path(resolved["val_file"]).read_text().splitlines() if line.strip()}
    assert not validated & {r["messages"][0]["content"] for r in trained}  # copies of training rows only
    from easytune.evaluation.buckets import job_buckets

    seen = job_buckets(resolved, rows={"seen": 1000, "unseen": 1000, "gatekeeper": 1}, seed=0)[0]
    assert sorted(item.question for item in seen.items) == sorted(r["messages"][0]["content"] for r in originals)

    plan.question_variants = 0
    plain = json.loads((Path(jobs.create_job(settings, plan)["job_dir"]) / "job.json").read_text())
    assert "question_variant_rows" not in plain
    assert len(Path(plain["train_file"]).read_text().splitlines()) == len(originals)


def test_a_job_on_answers_each_asked_two_ways_gives_every_question_two_copies(settings, tmp_path):
    """The validation split holds out some answers' second question; those answers keep two copies, as the
    import's count of ways asked (two for every answer) has it."""
    from easytune import datasets, jobs
    from easytune.plan.schema import TrainingPlan

    cities = ["Oslo", "Lima", "Kyiv", "Riga", "Bern", "Doha", "Baku", "Rome", "Nice", "Graz"]
    rows = [row(question.format(city=city), f"Our {city} store opens at {7 + i}:00.")
            for i, city in enumerate(cities)
            for question in ("When does your {city} store open?", "What time can I visit the {city} shop?")]
    source = tmp_path / "two_ways.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    dataset = datasets.add_dataset(settings, source, name="two-ways", val_ratio=0.2)["dataset"]
    plan = TrainingPlan.load(ROOT / "presets" / "demo.yaml")
    plan.dataset, plan.question_variants = dataset["id"], 2
    resolved = json.loads((Path(jobs.create_job(settings, plan)["job_dir"]) / "job.json").read_text())
    trained = [json.loads(line) for line in Path(resolved["train_file"]).read_text().splitlines()]
    users = len(trained) - resolved["question_variant_rows"]
    assert users < len(rows) and "one_way_rows" not in resolved  # some second questions held out, none one way
    assert resolved["question_variant_rows"] == 2 * users


def test_general_text_is_mixed_in_for_the_rows_as_written_not_for_their_copies(tmp_path):
    """Copies teach the same facts again: knowledge retention keeps its share of the user's own rows, so the
    copies do not also multiply the general text (and the run's length). An answer asked one way counts twice:
    its extra copies stand in for a second question, and without general text beside them the model forgets more
    (the shop's facts asked one way each, four copies: general questions 18 of 50, base 26)."""
    from support import cli_json, write_plan

    plan = write_plan(tmp_path / "plan.yaml", dataset="demo:shop_faq_en", question_variants=2, retention_ratio=0.5,
                      max_steps=2)
    job = cli_json("train", "--config", str(plan), home=tmp_path / "home")
    assert job["state"] == "COMPLETED", job
    resolved = json.loads((Path(job["job_dir"]) / "job.json").read_text())
    trained = len(Path(resolved["train_file"]).read_text().splitlines())
    events = [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]
    mixed = [e["params"]["general"] for e in events if e.get("key") == "train.log.retention_rehearsal"]
    assert resolved["question_variant_rows"] > 0 and resolved["one_way_rows"] > 0  # the demo asks each answer once
    # 50 %: as many as the user's rows and the second questions their answers' extra copies stand in for
    assert mixed == [trained - resolved["question_variant_rows"] + resolved["one_way_rows"]]
