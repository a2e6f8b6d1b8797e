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
