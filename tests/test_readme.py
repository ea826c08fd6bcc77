"""The README's set-up commands are the ones CI runs and the CLI accepts."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Set-up", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = _setup_commands()
    assert len(commands) == 2
    quickstart, tests = commands
    assert "proxygap run" in quickstart and "torch==2.13.0" in quickstart
    assert "pytest" in tests and "torch==2.13.0" in tests
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_quickstart_arguments_parse():
    from proxygap.cli import build_parser

    quickstart = _setup_commands()[0].split("proxygap ", 1)[1].split()
    args = build_parser().parse_args(quickstart)
    assert args.experiment == "overoptimization" and args.preset == "quick"
