"""The README's Python API example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    section = README.read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README API example", "exec"), scope)
    out = capsys.readouterr().out
    assert "rater" in out and "gold" in out and "config: 1 difference" in out and "sensor.tamper_bonus" in out
    assert (tmp_path / "runs" / "api-a" / "results.json").is_file()
