"""README's test command splits the suite's files between processes unless the command line says otherwise."""

from __future__ import annotations

from easytune import bootstrap


def test_the_suite_runs_its_files_whole_in_two_processes_where_there_are_two_cores(monkeypatch):
    monkeypatch.setattr(bootstrap.os, "cpu_count", lambda: 8)
    assert bootstrap.suite_processes(["tests/test_cli.py", "-q"]) == ["-n", "2", "--dist", "loadfile"]
    monkeypatch.setattr(bootstrap.os, "cpu_count", lambda: 1)
    assert bootstrap.suite_processes([]) == []


def test_a_command_line_that_picks_its_processes_is_left_alone(monkeypatch):
    monkeypatch.setattr(bootstrap.os, "cpu_count", lambda: 2)
    for args in (["-n", "0"], ["-n4"], ["--numprocesses=3"], ["-p", "no:xdist"]):
        assert bootstrap.suite_processes(args) == [], args
