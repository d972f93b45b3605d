"""Launch files cannot run here (`launch` has no wheel), so they are checked statically: they
compile, every executable they start is a console_script of setup.py, and every parameter file
under config/ holds only parameters the node declares; every declared parameter has a row in the
README's parameter tables."""
import ast
import glob
import re

import yaml

from kairos_ros.act_node import PARAMETERS
from kairos_ros.recorder_node import PARAMETERS as REC_PARAMETERS
from kairos_ros.bag_player_node import PARAMETERS as PLAYER_PARAMETERS
from kairos_ros.sim_robot_node import PARAMETERS as SIM_PARAMETERS

DECLARED = {"kairos_act": PARAMETERS, "sim_robot": SIM_PARAMETERS, "recorder": REC_PARAMETERS,
            "bag_player": {**PLAYER_PARAMETERS, "bags": None}}


def console_scripts():
    text = open("setup.py").read()
    return set(re.findall(r'"([\w-]+) = [\w.]+:\w+"', text))


def test_launch_files_compile_and_start_known_executables():
    files = glob.glob("launch/*.launch.py")
    assert files
    scripts = console_scripts()
    for f in files:
        tree = ast.parse(open(f).read(), f)
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body), f
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            for kw in call.keywords:
                if kw.arg == "executable":
                    assert isinstance(kw.value, ast.Constant) and kw.value.value in scripts, \
                        f"{f}: executable {ast.dump(kw.value)} is not a console_script ({sorted(scripts)})"
                if kw.arg == "package":
                    assert kw.value.value == "kairos_ros", f


def test_parameter_files_hold_only_declared_parameters():
    for f in glob.glob("config/*.yaml"):
        doc = yaml.safe_load(open(f))
        assert doc, f
        for node, section in doc.items():
            assert node in DECLARED, f"{f}: parameters for an unknown node {node!r}"
            params = section["ros__parameters"]
            known = DECLARED[node]
            assert set(params) <= set(known), f"{f}: {node} undeclared {sorted(set(params) - set(known))}"


def test_act_cli_rejects_unknown_parameters(tmp_path):
    import pytest
    from kairos_ros.act_cli import load_params
    bad = tmp_path / "bad.yaml"
    bad.write_text("kairos_act:\n  ros__parameters:\n    joint_name: [a]\n")
    with pytest.raises(ValueError, match=r"unknown parameters \['joint_name'\]"):
        load_params(str(bad))


def test_every_node_parameter_has_a_row_in_the_readme():
    rows = set(re.findall(r"^\| `(\w+)` \|", open("README.md").read(), re.M))
    for node, params in DECLARED.items():
        missing = sorted(set(params) - rows - {"bags"})
        assert not missing, f"{node}: README has no parameter row for {missing}"
