"""The act node's plain-Python core: limits hold for any model output, bad joint states are named,
and camera images convert (or are refused) without cv_bridge."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kairos_ros.core.image import ImageError, image_to_rgb, resize_rgb
from kairos_ros.core.safety import JointLimits, check_joint_state, reorder

LIMITS = JointLimits(["a", "b", "c"], lower=[-1.0, 0.0, -3.0], upper=[1.0, 2.0, 3.0], max_velocity=[0.5, 1.0, 2.0])
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=300, deadline=None)
@given(chunk=arrays(np.float64, st.tuples(st.integers(1, 12), st.just(3)), elements=floats),
       current=arrays(np.float64, (3,), elements=st.floats(-10, 10)), dt=st.floats(0.001, 1.0))
def test_no_clamped_point_ever_exceeds_the_limits(chunk, current, dt):
    out = LIMITS.clamp_chunk(chunk, current, dt)
    assert np.isfinite(out).all()
    assert (out >= np.array(LIMITS.lower)).all() and (out <= np.array(LIMITS.upper)).all()
    prev = np.clip(current, LIMITS.lower, LIMITS.upper)
    steps = np.diff(np.vstack([prev, out]), axis=0)
    assert (np.abs(steps) <= np.array(LIMITS.max_velocity) * dt + 1e-9).all()


def test_a_chunk_inside_the_limits_passes_unchanged():
    chunk = np.array([[0.1, 1.0, 0.0], [0.2, 1.1, 0.5]])
    assert np.allclose(LIMITS.clamp_chunk(chunk, np.array([0.0, 1.0, 0.0]), dt=1.0), chunk)


def test_limits_config_errors():
    with pytest.raises(ValueError, match="2 names but 1 lower"):
        JointLimits(["a", "b"], [0.0], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="need lower <= upper"):
        JointLimits(["a"], [1.0], [0.0], [1.0])
    with pytest.raises(ValueError, match=r"chunk must be \[H, 3\]"):
        LIMITS.clamp_chunk(np.zeros((2, 2)), np.zeros(3), 0.1)


def test_joint_state_checks_name_the_cause():
    exp = ["a", "b"]
    assert check_joint_state(exp, ["b", "a", "x"], [0.0, 1.0, 2.0], 0.2, 0.05) is None
    assert "old" in check_joint_state(exp, ["a", "b"], [0.0, 1.0], 0.2, 0.5)
    assert "lacks joints ['b']" in check_joint_state(exp, ["a"], [0.0], 0.2, 0.0)
    assert "non-finite" in check_joint_state(exp, ["a", "b"], [float("nan"), 0.0], 0.2, 0.0)
    assert np.allclose(reorder(["b", "a"], [2.0, 1.0], ["a", "b"]), [1.0, 2.0])


def test_images_convert_from_every_supported_encoding():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    assert np.array_equal(image_to_rgb("rgb8", 4, 6, 18, rgb.tobytes()), rgb)
    assert np.array_equal(image_to_rgb("bgr8", 4, 6, 18, rgb[..., ::-1].tobytes()), rgb)
    rgba = np.concatenate([rgb, np.full((4, 6, 1), 255, np.uint8)], -1)
    assert np.array_equal(image_to_rgb("rgba8", 4, 6, 24, rgba.tobytes()), rgb)
    padded = np.zeros((4, 20), np.uint8)                     # row step longer than the row
    padded[:, :18] = rgb.reshape(4, 18)
    assert np.array_equal(image_to_rgb("rgb8", 4, 6, 20, padded.tobytes()), rgb)
    mono = image_to_rgb("mono8", 4, 6, 6, rgb[..., 0].tobytes())
    assert mono.shape == (4, 6, 3) and np.array_equal(mono[..., 2], rgb[..., 0])


def test_bad_images_are_refused_with_what_came_and_what_was_expected():
    with pytest.raises(ImageError, match="'bgr16', expected one of rgb8, bgr8"):
        image_to_rgb("bgr16", 2, 2, 12, bytes(24))
    with pytest.raises(ImageError, match="holds 10 bytes, expected step \\* height = 12"):
        image_to_rgb("rgb8", 2, 2, 6, bytes(10))
    with pytest.raises(ImageError, match="0x2"):
        image_to_rgb("rgb8", 2, 0, 0, b"")


def test_resize_crops_centre_and_averages():
    img = np.zeros((8, 12, 3), np.uint8)
    img[:, 2:10] = 200
    out = resize_rgb(img, 4)
    assert out.shape == (4, 4, 3) and (out == 200).all()
    assert resize_rgb(np.zeros((5, 7, 3), np.uint8), 3).shape == (3, 3, 3)


def test_compressed_images_decode_and_garbage_is_an_image_error():
    import io

    import pytest
    from PIL import Image

    from kairos_ros.core.image import ImageError, decode_compressed
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, :16, 0] = 255
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    out = decode_compressed("rgb8; png compressed bgr8", buf.getvalue())
    np.testing.assert_array_equal(out, rgb)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    assert np.abs(decode_compressed("jpeg", buf.getvalue()).astype(int) - rgb).mean() < 6
    with pytest.raises(ImageError, match="cannot be decoded"):
        decode_compressed("jpeg", b"not a jpeg")
    with pytest.raises(ImageError, match="not supported"):
        decode_compressed("tiff", b"")


URDF = """<robot name="arm">
  <joint name="j1" type="revolute"><limit lower="-1.5" upper="1.5" velocity="2.0" effort="10"/></joint>
  <joint name="j2" type="prismatic"><limit lower="0" upper="0.04" velocity="0.1" effort="5"/></joint>
  <joint name="j3" type="continuous"><limit velocity="3.0" effort="1"/></joint>
  <joint name="fixed" type="fixed"/>
</robot>"""


def test_urdf_limits_in_the_order_asked():
    from kairos_ros.core.urdf import urdf_limits
    lo, hi, vel = urdf_limits(URDF, ["j2", "j1", "j3"])
    assert lo[:2] == [0.0, -1.5] and hi[:2] == [0.04, 1.5] and vel == [0.1, 2.0, 3.0]
    assert lo[2] == -np.inf and hi[2] == np.inf
    with pytest.raises(ValueError, match=r"no limits for joints \['fixed'\]"):
        urdf_limits(URDF, ["j1", "fixed"])
    with pytest.raises(ValueError, match="cannot be parsed"):
        urdf_limits("<robot>", ["j1"])
