"""ament_python package `xmod_ros`: installs the pure core (`xmod_core`) and the ROS adapters
(`xmod_ros`), with launch and config files under share/xmod_ros/."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "xmod_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["xmod_core", "xmod_core.*", "xmod_ros", "xmod_ros.*"]),
    package_data={"xmod_core": ["assets/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/demo", glob("config/demo/*.yaml")),
        (f"share/{PACKAGE}/config/paper", glob("config/paper/*.yaml")),
        (f"share/{PACKAGE}/config/gpu", glob("config/gpu/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=["numpy", "scipy", "opencv-python-headless", "pyyaml", "tqdm"],
    extras_require={"sim": ["pybullet"], "train": ["torch", "tensorboard"]},
    zip_safe=True,
    maintainer="xmod_ros maintainers",
    maintainer_email="xmod@example.org",
    description="Label-free 2D/3D multi-object discovery (xMOD) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "xmod_sim = xmod_core.sim:main",
            "xmod_node = xmod_ros.node:main",
            "xmod_bag = xmod_ros.bag:main",
            "xmod_launch = xmod_ros.launch:main",
            "xmod_demo = xmod_ros.demo:main",
            "xmod_motion = xmod_core.motion.cli:main",
            "xmod_train = xmod_core.train:main",
            "xmod_evaluate = xmod_core.evaluate:main",
        ],
    },
)
