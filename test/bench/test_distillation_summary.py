"""bench/distillation_summary.py prints the README's distillation tables from the committed bench JSON
and evaluation reports: every row it prints must be in the README as printed, and every section it
links to must exist in docs/results/distillation.md (a figure in the README that no run backs, or a
dead link, fails)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_readme_tables_are_the_runs():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "distillation_summary.py")], check=True,
                         capture_output=True, text=True).stdout
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and not ln.startswith(("| model |", "| compared |"))]
    assert len(rows) == 5 + 9                     # the bench table's five rows, nine comparisons
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read().splitlines()
    missing = [r for r in rows if r not in readme]
    assert not missing, ("README distillation tables differ from the runs; rerun bench/distillation_summary.py:\n"
                         + "\n".join(missing))
    # the paired test the README's text quotes is the one the reports give
    assert "| 19 / 3 (p = 0.00086) |" in out
    assert "131 of 150 against the student's 147 (p = 0.0009)" in "\n".join(readme)
