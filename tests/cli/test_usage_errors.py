"""A mistyped option or command is a usage error (exit 2, click's message naming the fix), not an internal error:
typer >= 0.22 raises the exceptions of its own vendored click."""
from __future__ import annotations

from medground.cli.main import main


def test_unknown_option_and_command_exit_2(capsys):
    assert main(["segment", "x.png", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "No such option: --bogus" in err and "internal error" not in err
    assert main(["segmnt", "x.png"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'segment'" in err and "internal error" not in err
