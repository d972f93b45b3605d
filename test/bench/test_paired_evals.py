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


def test_groups_of_reports_pair_seed_by_seed_and_pool(tmp_path, capsys):
    import paired_evals
    a0 = _report(tmp_path / "a0.json", [(True, 10)] * 10)
    a1 = _report(tmp_path / "a1.json", [(True, 10)] * 5 + [(False, 40)] * 5)
    b0 = _report(tmp_path / "b0.json", [(False, 40)] * 10)
    b1 = _report(tmp_path / "b1.json", [(False, 40)] * 5 + [(True, 10)] * 5)
    a, b = paired_evals.load_group(f"{a0},{a1}"), paired_evals.load_group(f"{b0},{b1}")
    c = paired_evals.compare(a, b)
    # 20 pairs: seed 0 pairs a0 with b0 (10 only a), seed 1 a1 with b1 (5 only a, 5 only b)
    assert c["scenes"] == 20 and c["success"] == (15, 5) and (c["only_a"], c["only_b"]) == (15, 5)
    assert paired_evals.per_task(a) == {"reach-wall-around-v3": (15, 20)}
    with pytest.raises(ValueError, match="same number of reports"):
        paired_evals.compare(a, paired_evals.load(b0))            # a group against one report shares no key
    assert paired_evals.main([f"{a0},{a1}", f"{b0},{b1}", "--per-task"]) == 0
    out = capsys.readouterr().out
    assert "success 15 vs 5 (solved by only one: 15 vs 5" in out and "reach-wall-around-v3 15/20" in out
