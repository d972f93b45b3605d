"""Scripted experts this project adds to Meta-World's (kairos_sim.metaworld_sim.PROJECT_TASKS).

AroundWallPolicy: Meta-World's reach-wall scene (a 24 cm x 12 cm wall between the hand and the
goal), with the wall moved 10 cm to the left so that it is centred on the hand's start and on the
goals (x = 0; Meta-World has it at x = 0.10, 2 cm from where the hand starts, which makes the left
way round the obvious one: a first model trained on it went left in every scene), raised to 30 cm,
and the goal's height drawn from 5-10 cm (edit_scene), but the expert keeps the hand low (7 cm) and goes around the
wall on one side, left or right, drawn per scene from its variation number, so nothing in the picture
tells which. The demonstrations are therefore bimodal: for the same first frame half go left and half
go right, and their average (straight ahead) runs into the wall. That is the case where a flow
sampler with too few steps lands between the modes, which a distilled few-step student should not
(issue 8, docs/results/distillation.md, "A teacher that needs its steps: two ways round a wall").

The policy reads Meta-World's observation vector like Meta-World's own policies (hand at [0:3], goal
at [-3:]) and moves the hand with their proportional `move` (clipped to 1 cm per physics step).
"""
from __future__ import annotations

import numpy as np

# The wall of reach-wall-v3 (sawyer_reach_wall_v3.xml: centre x 0.10, y 0.75, half sizes 0.12, 0.01, 0.06),
# moved to x = 0 by edit_scene: the hand starts at x = 0 and the goals lie in x -0.05..0.05.
WALL_CENTRE_X = 0.0
WALL_X = (WALL_CENTRE_X - 0.12, WALL_CENTRE_X + 0.12)
WALL_Y = 0.75
SIDE_X = {"left": WALL_X[0] - 0.10, "right": WALL_X[1] + 0.10}     # 10 cm clear of the wall's ends
LOW_Z = 0.07                                 # the height the expert goes round at


GOAL_Z = (0.05, 0.10)     # goal heights (Meta-World draws 0.05..0.30)
WALL_TOP = 0.30           # the wall's height (Meta-World's is 0.12)


def edit_scene(env) -> None:
    """Centre reach-wall-v3's wall on the hand's start (a static body: its geoms move with it) and raise
    it to WALL_TOP, and draw the goal's height from GOAL_Z instead of 5-30 cm: at 64 px the goal marker is about a pixel, and a
    first teacher on the full range failed 40% of its scenes hovering over the goal at the wrong
    height, which hid the two-ways choice this task is for. The height: at Meta-World's 12 cm a
    teacher sampled in one step (the average of the two ways, in joint space) lifted the hand over
    the wall in 43 of 50 scenes and succeeded, so the average was a third way; at 30 cm it is not."""
    from gymnasium.spaces import Box
    m = env.model
    wall = m.body("wall")
    wall.pos[0], wall.pos[2] = WALL_CENTRE_X, WALL_TOP / 2
    for g in range(m.ngeom):          # the wall's visual and collision boxes: half height WALL_TOP / 2
        if m.geom_bodyid[g] == wall.id:
            m.geom_size[g, 2] = WALL_TOP / 2
    low, high = env._random_reset_space.low.copy(), env._random_reset_space.high.copy()
    low[5], high[5] = GOAL_Z
    env._random_reset_space = Box(low, high, dtype=np.float64)
    env.goal_space = Box(low[3:], high[3:], dtype=np.float64)


def side_of(variation: int) -> str:
    """The side the expert takes in scene `variation`: a fair coin seeded by the variation (and
    independent of Meta-World's scene sampling, which uses the variation as its own seed)."""
    return "left" if np.random.default_rng([int(variation), 0x3A11]).random() < 0.5 else "right"


class AroundWallPolicy:
    """get_action(obs) -> [4] (end-effector delta, grab effort) as Meta-World's policies. `sim` is the
    MetaWorldSim whose current variation decides the side (read at every call, so one policy object
    serves every episode). Waypoints, chosen from the hand position alone: in front of the wall and
    not yet at the side, go sideways (and down) to the side; at the side, go forward past the wall;
    past it, go to the goal."""

    def __init__(self, sim):
        self.sim = sim

    @property
    def side(self) -> str:
        return side_of(self.sim.variation)

    def waypoint(self, hand: np.ndarray, goal: np.ndarray) -> np.ndarray:
        sx = SIDE_X[self.side]
        if hand[1] >= WALL_Y + 0.05:
            return goal
        if abs(hand[0] - sx) > 0.03 and hand[1] < WALL_Y - 0.05:
            return np.array([sx, 0.64, LOW_Z])
        return np.array([sx, 0.90, LOW_Z])

    def get_action(self, obs: np.ndarray) -> np.ndarray:
        hand, goal = np.asarray(obs[:3], np.float64), np.asarray(obs[-3:], np.float64)
        delta = np.clip((self.waypoint(hand, goal) - hand) * 10.0, -1.0, 1.0)
        return np.concatenate([delta, [0.0]]).astype(np.float32)


def way_round(hand_path_n3) -> str:
    """How a hand path [N, 3] (m) went past the wall, judged from where it was while near the wall's
    plane (within 5 cm of it, up to the first point 2 cm past it): 'left' or 'right' when those points'
    mean x is beyond the wall's end, 'over' when it is in front of the wall and the hand rose above
    its top there, else 'blocked': it never got past (the average of the two ways runs into the wall),
    or it stood in front of the wall's middle long enough to pull that mean inside the wall's width
    before going round (a sampler that lands between the ways and then recovers). The bench's counts
    of 'blocked' are therefore episodes stalled in front of the wall, whether or not they succeeded."""
    p = np.asarray(hand_path_n3, np.float64)
    past = np.nonzero(p[:, 1] > WALL_Y + 0.02)[0]
    if len(past) == 0:
        return "blocked"
    near = p[: past[0] + 1]
    near = near[np.abs(near[:, 1] - WALL_Y) < 0.05]
    if len(near) == 0:        # crossed the plane within one step: the last point before it
        near = p[max(past[0] - 1, 0): past[0]]
    x, z = float(near[:, 0].mean()), float(near[:, 2].max())
    if x < WALL_X[0]:
        return "left"
    if x > WALL_X[1]:
        return "right"
    return "over" if z > WALL_TOP else "blocked"
