"""bench/distillation.py's open-loop measure on the two-ways task: first chunks are counted left /
between / right of the start, and their distance to the 40-step teacher's samples is the 1-D
Wasserstein distance (cm); the histogram figure is written."""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_chunk_stats_counts_the_ways_and_measures_the_distance_to_the_teacher():
    import distillation as d
    teacher = np.array([[-0.10, 0.10], [-0.11, 0.09]])          # bimodal: two each way
    same = teacher.copy()
    averaged = np.zeros((2, 2))                                   # every sample between the ways
    s = d.chunk_stats(same, teacher)
    assert (s["left"], s["between"], s["right"]) == (2, 0, 2) and s["w1_to_teacher_cm"] == 0.0
    s = d.chunk_stats(averaged, teacher)
    assert (s["left"], s["between"], s["right"]) == (0, 4, 0)
    assert abs(s["w1_to_teacher_cm"] - 10.0) < 1e-9             # each sample moved 9-11 cm, 10 on average
    # the threshold is BETWEEN_M, inclusive on the side of the ways
    s = d.chunk_stats(np.array([d.BETWEEN_M, -d.BETWEEN_M, 0.5 * d.BETWEEN_M]), teacher)
    assert (s["left"], s["between"], s["right"]) == (1, 1, 1)


def test_chunk_histograms_are_drawn(tmp_path):
    import distillation as d
    rng = np.random.default_rng(0)
    rows = [("teacher @40", rng.choice([-0.1, 0.1], (5, 8))), ("teacher @1", rng.normal(0, 0.01, (5, 8)))]
    out = tmp_path / "chunks.png"
    d.plot_chunk_offsets(rows, np.array([-0.1, 0.1, 0.1, -0.1, 0.1]), str(out))
    assert out.stat().st_size > 1000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_first_chunks_are_taken_to_the_hands_sideways_offset(tmp_path):
    """On two held-out wall-task scenes: the expert's own first chunk, through the same de-normalisation
    and forward kinematics, puts the hand ~10 cm to its side (the side the scene's coin chose), and a
    model's samples come back [scenes, samples], finite and reproducible."""
    import kairos_sim  # noqa: F401  (before mujoco)
    import distillation as d
    from kairos_sim.experts import side_of
    from kairos_sim.metaworld_sim import TEST_VARIATIONS, MetaWorldSim, SimConfig
    from training.recipe import SourceConfig
    from training.trainer import Dist, load_episodes
    tr, norm, meta = d.load_model(os.path.join(ROOT, "artifacts", "tiny_button_press"))
    eps = load_episodes(SourceConfig(kind="sim_expert", tasks=[d.WALL_TASK], episodes=2,
                                     first_variation=TEST_VARIATIONS, actions=True),
                        str(tmp_path), meta.get("joint_names") or [], Dist(), sync=False)
    sim = MetaWorldSim(SimConfig(task=d.WALL_TASK))
    offs, expert = d.first_chunk_offsets(tr, eps, norm, steps=1, samples=3, sim=sim)
    assert offs.shape == (2, 3) and expert.shape == (2,) and np.isfinite(offs).all()
    for k, x in enumerate(expert):
        sign = -1 if side_of(TEST_VARIATIONS + k) == "left" else 1
        assert 0.05 < sign * x < 0.15, (k, x)
    again, _ = d.first_chunk_offsets(tr, eps, norm, steps=1, samples=3, sim=sim)
    assert np.array_equal(offs, again)
