"""kairos_ros: an ament_python package holding the ROS nodes (kairos_ros), the model
(kairos_model) and the training / export tools (training). kairos_msgs is a separate
ament_cmake interface package (see scripts/setup.sh for the build without colcon)."""
from glob import glob

from setuptools import find_packages, setup

package_name = "kairos_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["kairos_ros", "kairos_ros.*", "kairos_model", "kairos_model.*",
                                    "training", "training.*", "kairos_sim", "kairos_sim.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],  # real pins live in requirements.txt (torch must stay 2.13.0)
    zip_safe=True,
    maintainer="Kairos-ROS maintainers",
    maintainer_email="maintainers@kairos-ros.org",
    description="ROS 2 deployment of the Kairos world action model",
    license="Apache-2.0",
    python_requires=">=3.11",
    entry_points={
        "console_scripts": [
            "kairos = training.cli:main",
            "act_node = kairos_ros.act_node:main",
            "sim_robot = kairos_ros.sim_robot_node:main",
            "recorder = kairos_ros.recorder_node:main",
            "bag_player = kairos_ros.bag_player_node:main",
        ],
    },
)
