"""Joint limits from a URDF (the robot description the rest of a ROS system already uses), parsed
with the standard library. Only <joint><limit lower upper velocity/></joint> is read."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Dict, List, Sequence, Tuple


def urdf_limits(path_or_xml: str, joints: Sequence[str]) -> Tuple[List[float], List[float], List[float]]:
    """(lower, upper, max_velocity) for `joints`, in that order. Continuous joints get +-inf position
    limits. Raises ValueError for a joint that is missing or has no usable limit."""
    text = path_or_xml
    if not path_or_xml.lstrip().startswith("<"):
        with open(path_or_xml) as f:
            text = f.read()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"URDF cannot be parsed: {e}") from e
    found: Dict[str, Tuple[float, float, float]] = {}
    for j in root.iter("joint"):
        name, kind = j.get("name"), j.get("type")
        lim = j.find("limit")
        if kind == "continuous":
            vel = float(lim.get("velocity")) if lim is not None and lim.get("velocity") else float("inf")
            found[name] = (float("-inf"), float("inf"), vel)
        elif lim is not None and kind in ("revolute", "prismatic"):
            try:
                found[name] = (float(lim.get("lower")), float(lim.get("upper")), float(lim.get("velocity")))
            except (TypeError, ValueError) as e:
                raise ValueError(f"URDF joint {name!r} has an incomplete <limit> ({lim.attrib})") from e
    missing = [n for n in joints if n not in found]
    if missing:
        raise ValueError(f"URDF has no limits for joints {missing} (limited joints: {sorted(found)})")
    lo, hi, vel = zip(*(found[n] for n in joints))
    return list(lo), list(hi), list(vel)
