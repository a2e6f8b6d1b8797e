"""benchmarks/gpu_check.py in its CPU dry mode: the prepared device check prints every line."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_device_check_prints_every_line_in_its_dry_mode():
    script = REPO / "benchmarks" / "gpu_check.py"
    done = subprocess.run(
        [sys.executable, str(script), "--dry", "--device", "cpu"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("device check on CPU") and "DRY RUN" in lines[0]
    labels = [
        "LeNet-300-100 epoch, OpenLTH-style loop",
        "LeNet-300-100 epoch, maskstudy",
        "2 LeNet-300-100 seeds side by side",
        "ResNet-20, one run, eager",
        "ResNet-20, one run, captured",
        "ResNet-20, 2 replicas side by side",
        "ResNet-20, 2 processes at once",
        "correctness",
    ]
    assert [line.split("  ")[0].strip() for line in lines[1:]] == labels
    assert "[eager (CUDA graphs need a CUDA device, this is cpu), fp32]" in lines[5]
    assert lines[-1].endswith("masks equal to the CPU run's: True; pruned weights exactly 0: True")
