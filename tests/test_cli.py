"""The CLI's reporting commands speak JSON for scripts and the user's language for people."""

import json

from support import cli, cli_json


def test_doctor_reports_device_memory_versions_and_home(home):
    report = cli_json("doctor", home=home)
    assert report["home"] == str(home)
    assert report["hardware"]["accelerator"] in ("cpu", "cuda", "mps", "xpu")
    assert report["hardware"]["ram_total"] > 0
    assert report["versions"]["torch"] and report["versions"]["gradio"]
    zh = cli("doctor", home=home, lang="zh").stdout
    assert "训练设备" in zh and "内存" in zh


def test_unknown_job_is_a_clear_error_in_both_languages(home):
    result = cli("jobs", "show", "nope", home=home, check=False)
    assert result.returncode == 2 and "easytune jobs list" in result.stderr
    assert "没有 ID 为 nope 的任务" in cli("jobs", "show", "nope", home=home, check=False, lang="zh").stderr


def test_jobs_list_is_empty_json_on_a_new_home(home):
    assert cli_json("jobs", "list", home=home) == []


def test_plan_explain_gives_a_settings_help_from_the_catalog(home):
    from easytune.i18n import t
    from easytune.plan.schema import plan_fields

    entry = cli_json("plan", "--explain", "learning_rate", home=home)
    assert entry["help"] == t("plan.field.learning_rate", "en") and entry["default"] == 0.0002
    assert [e["name"] for e in cli_json("plan", "--explain", home=home)] == [f.name for f in plan_fields()]
    zh = cli("plan", "--explain", "learning_rate", home=home, lang="zh").stdout
    assert t("plan.field.learning_rate", "zh") in zh and t("planner.why.learning_rate", "zh") in zh


def test_plan_set_errors_name_the_setting_and_the_way_out(home):
    typo = cli("plan", "--data", "demo:shop_faq_en", "--set", "learning_rte=0.1", "--json", home=home, check=False)
    assert typo.returncode == 2 and json.loads(typo.stdout)["error"] == "plan.unknown_key"
    assert "learning_rate" in typo.stderr and "easytune plan --explain" in typo.stderr
    bare = cli("plan", "--data", "demo:shop_faq_en", "--set", "learning_rate", home=home, check=False)
    assert bare.returncode == 2 and "KEY=VALUE" in bare.stderr and "Traceback" not in bare.stderr
    assert "--data" in cli("plan", home=home, check=False).stderr
