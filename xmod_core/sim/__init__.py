"""Simulated KITTI-format driving world with full ground truth (PyBullet, optional extra `sim`).

`python -m xmod_core.sim --help`. Only `xmod_core.sim.engine` imports PyBullet; scene generation
(`scene`) and the writer's helpers are plain numpy.
"""


def main(argv=None) -> int:
    from .cli import main as _main
    return _main(argv)
