"""bench/paired_evals.py compares two kairos evaluate reports scene by scene: success with the exact
McNemar test, episode length with the Wilcoxon signed-rank test, on the scenes both ran."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def _report(path, episodes):
    path.write_text(json.dumps({"episodes": {"reach-wall-around-v3": [
        {"variation": 10000 + i, "success": ok, "steps": n} for i, (ok, n) in enumerate(episodes)]}}))
    return str(path)


def test_paired_comparison_counts_discordant_scenes_and_tests_them(tmp_path, capsys):
    import paired_evals
    good = _report(tmp_path / "a.json", [(True, 10)] * 20)
    bad = _report(tmp_path / "b.json", [(False, 40)] * 8 + [(True, 20)] * 12)
    a, b = paired_evals.load(good), paired_evals.load(bad)
    c = paired_evals.compare(a, b)
    assert c["scenes"] == 20 and c["success"] == (20, 12) and (c["only_a"], c["only_b"]) == (8, 0)
    assert abs(c["mcnemar_p"] - 2 * 0.5 ** 8) < 1e-12            # exact two-sided binomial, 8 of 8 one way
    assert c["mean_steps"] == (10.0, (8 * 40 + 12 * 20) / 20) and c["wilcoxon_p"] < 1e-3
    same = paired_evals.compare(a, a)
    assert same["mcnemar_p"] == 1.0 and same["wilcoxon_p"] == 1.0   # identical runs: nothing to test
    assert paired_evals.main([good, bad]) == 0
    assert "success 20 vs 12 (solved by only one: 8 vs 0" in capsys.readouterr().out


def test_reports_without_common_scenes_are_refused(tmp_path):
    import paired_evals
    a = paired_evals.load(_report(tmp_path / "a.json", [(True, 10)]))
    b = {("reach-wall-around-v3", 20000): (True, 10)}
    with pytest.raises(ValueError, match="share no scene"):
        paired_evals.compare(a, b)
