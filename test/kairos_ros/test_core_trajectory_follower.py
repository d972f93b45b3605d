"""The sim robot's joint_trajectory_controller semantics."""
import numpy as np
import pytest

from kairos_ros.core.trajectory_follower import TrajectoryFollower


def test_interpolates_in_time_and_holds_the_last_point():
    f = TrajectoryFollower(["a", "b"])
    cur = np.array([0.0, 0.0])
    np.testing.assert_array_equal(f.target(5.0, cur), cur)              # nothing yet: hold
    # joints given in another order; stamp 10 s, points at +1 s and +2 s
    f.set(["b", "a"], [1.0, 2.0], np.array([[2.0, 1.0], [4.0, 3.0]]), stamp_s=10.0, now_s=10.0, current=cur)
    np.testing.assert_allclose(f.target(10.5, cur), [0.5, 1.0])         # halfway from the start position
    np.testing.assert_allclose(f.target(11.5, cur), [2.0, 3.0])
    np.testing.assert_allclose(f.target(99.0, cur), [3.0, 4.0])         # after the end: the last point


def test_a_zero_stamp_means_on_receipt():
    f = TrajectoryFollower(["a"])
    f.set(["a"], [1.0], np.array([[1.0]]), stamp_s=0.0, now_s=5.0, current=np.array([0.0]))
    np.testing.assert_allclose(f.target(5.5, np.array([0.0])), [0.5])


def test_bad_trajectories_are_refused():
    f = TrajectoryFollower(["a", "b"])
    with pytest.raises(ValueError, match="do not match"):
        f.set(["a", "c"], [1.0], np.array([[1.0, 1.0]]), 0.0, 0.0, np.zeros(2))
    with pytest.raises(ValueError, match="non-finite"):
        f.set(["a", "b"], [1.0], np.array([[np.nan, 1.0]]), 0.0, 0.0, np.zeros(2))
