"""The CLI's reporting commands speak JSON for scripts and the user's language for people."""

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
