"""A command's fixed cost: training and status commands do not load the analysis libraries."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("scipy", "matplotlib", "seaborn", "sklearn")


def test_training_commands_load_no_analysis_libraries():
    """`run`, `branch`, `sweep`, `status` (everything commands.py imports at module level) load
    neither scipy nor matplotlib, seaborn or scikit-learn; maskstudy.analysis's names still
    load on first use."""
    code = (
        "import sys\n"
        "import maskstudy.commands, maskstudy.analysis.lmc, maskstudy.data\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not loaded, f'loaded {loaded}'\n"
        "from maskstudy.analysis import flip_table\n"
        "assert callable(flip_table) and 'scipy' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_help_text_renders_as_written(capsys):
    """argparse %-formats help strings: a bare '%' (as in '% remaining') prints the parser's
    internals instead of the text. The top-level help and each command's own help must show
    the text as written."""
    from maskstudy.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for text in [parser.format_help()] + [p.format_help() for p in commands.values()]:
        assert "option_strings" not in text and "'dest'" not in text
    assert "levels, % remaining, accuracy" in " ".join(parser.format_help().split())
