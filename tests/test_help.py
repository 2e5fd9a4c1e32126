"""Every ``sparseviz`` subcommand and every ``python -m sparseviz...`` entry answers ``--help``:
exit status 0, a usage line, no traceback (a bare ``%`` in an option's help once crashed two of them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sparseviz import cli

PACKAGE = Path(cli.__file__).parent


def module_entries() -> list[str]:
    """Modules runnable with ``python -m``: packages with a ``__main__.py`` and modules with a main guard."""
    entries = []
    for path in sorted(PACKAGE.rglob("*.py")):
        dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if path.name == "__main__.py":
            entries.append(dotted.removesuffix(".__main__"))
        elif 'if __name__ == "__main__":' in path.read_text():
            entries.append(dotted)
    return entries


@pytest.mark.parametrize("command", cli.COMMAND_MODULES)
def test_every_subcommand_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    assert out.startswith(f"usage: sparseviz {command}")
    assert "Traceback" not in out + err


def test_the_top_level_help_names_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for command in cli.COMMAND_MODULES:
        assert command in out


def test_the_module_entries_are_found() -> None:
    assert {"sparseviz", "sparseviz.cli"} <= set(module_entries())


@pytest.mark.slow
@pytest.mark.parametrize("entry", [[sys.executable, "-m", name] for name in module_entries()]
                         + [[str(Path(sys.executable).with_name("sparseviz"))]], ids=lambda argv: " ".join(argv[1:]) or "sparseviz")
def test_every_entry_point_help_in_a_fresh_process(entry: list[str]) -> None:
    done = subprocess.run([*entry, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: sparseviz")
    assert "Traceback" not in done.stdout + done.stderr
