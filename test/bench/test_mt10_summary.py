"""bench/mt10_summary.py prints the README's MT10 summary tables from the committed evaluation
reports: every row it prints must be in the README as printed, and every section it links to must
exist in docs/results/mt10.md (a figure in the README that no report backs, or a dead link, fails)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_readme_tables_are_the_reports():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "mt10_summary.py")], check=True,
                         capture_output=True, text=True).stdout
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and not ln.startswith("| model |")]
    assert len(rows) == 4 + 4                                   # expert, two seeds, BC; two world models, two BCs
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read().splitlines()
    missing = [r for r in rows if r not in readme]
    assert not missing, "README MT10 tables differ from the reports; rerun bench/mt10_summary.py:\n" + "\n".join(missing)
    # the paired tests it prints are the README's
    assert "1043 vs 1002 of 1500 (solved by only one: 110 vs 69, p = 0.0027)" in out
    assert "1043 vs 1002, **p = 0.0027**" in "\n".join(readme)
