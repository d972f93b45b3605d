"""The project's own scripted experts (kairos_sim.experts): reach-wall-around-v3 goes round the wall on
a side drawn per scene, both sides succeed, and the average of the two ways runs into the wall, which
is what makes the task bimodal (the few-step distillation experiment of issue 8)."""
import numpy as np
import pytest

from kairos_sim.experts import SIDE_X, WALL_Y, AroundWallPolicy, side_of, way_round
from kairos_sim.metaworld_sim import MetaWorldSim, SimConfig, rollout_expert


@pytest.fixture(scope="module")
def sim():
    s = MetaWorldSim(SimConfig(task="reach-wall-around-v3"))
    yield s
    s.close()


def test_the_side_is_a_fair_coin_of_the_variation():
    sides = [side_of(v) for v in range(400)]
    assert sides == [side_of(v) for v in range(400)]            # fixed by the variation
    assert 160 < sides.count("left") < 240                         # both ways, about half each
    assert {side_of(v) for v in range(10_000, 10_020)} == {"left", "right"}   # held-out scenes too


def test_both_ways_round_succeed_and_pass_the_wall_on_their_side(sim):
    seen = set()
    for v in range(6):
        frames, joints, actions, ok = rollout_expert(sim, v)
        assert ok, f"expert failed scene {v} ({side_of(v)})"
        # replay the recorded joint targets and watch where the hand crosses the wall's plane
        sim.reset(v)
        path = [sim.hand()]
        for a in actions:
            sim.step(a, render=False)
            path.append(sim.hand())
        assert sim.success
        side = way_round(path)
        assert side == side_of(v), f"scene {v}: went {side}, expected {side_of(v)}"
        seen.add(side)
    assert seen == {"left", "right"}


class _Middle(AroundWallPolicy):
    """The average of the two ways: the side's x halfway between them, straight at the wall."""

    def waypoint(self, hand, goal):
        w = super().waypoint(hand, goal)
        if hand[1] < WALL_Y + 0.05:
            w[0] = 0.5 * (SIDE_X["left"] + SIDE_X["right"])
        return w


def test_the_average_of_the_two_ways_runs_into_the_wall(sim):
    pol = _Middle(sim)
    sim.reset(10_000)
    path = [sim.hand()]
    for _ in range(sim.cfg.max_steps):
        sim.expert_step(pol)
        path.append(sim.hand())
    assert not sim.success
    assert way_round(path) == "blocked", "the hand should be stopped in front of the wall"


class _Over(AroundWallPolicy):
    """Straight over the middle of the wall at 20 cm: over Meta-World's 12 cm wall, not over this one."""

    def waypoint(self, hand, goal):
        return np.array([0.0, 0.90, 0.20]) if hand[1] < WALL_Y + 0.05 else goal


def test_the_wall_is_too_high_to_go_over(sim):
    sim.reset(10_001)
    path = [sim.hand()]
    for _ in range(sim.cfg.max_steps):
        sim.expert_step(_Over(sim))
        path.append(sim.hand())
    assert not sim.success and way_round(path) == "blocked"


def test_project_tasks_have_an_instruction_and_unknown_tasks_are_refused(sim):
    assert sim.instruction == "reach the goal around the wall"
    with pytest.raises(ValueError, match="reach-wall-around-v3"):
        MetaWorldSim(SimConfig(task="reach-wall-sideways-v3"))
