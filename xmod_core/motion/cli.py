"""`python -m xmod_core.motion DRIVE_DIR [--config config/motion.yaml] [--force] [key=value ...]`"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ConfigError
from ..kitti import KittiFormatError
from .config import load_motion_config
from .drive import process_drive
from .ego import MotionInputError

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "motion.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m xmod_core.motion",
        description="Motion instance masks (uint16 PNG per frame) for KITTI raw drives.",
        epilog="Overrides: dotted keys of config/motion.yaml, e.g. scale=0.5 flow.preset=fast "
               "ego.source=data residual.threshold=2")
    p.add_argument("drives", nargs="+", type=Path, help="drive directories (DATE/DATE_drive_NNNN_sync)")
    p.add_argument("--config", type=Path, default=None,
                   help=f"YAML parameters (default: {DEFAULT_CONFIG} when present, else built-in defaults)")
    p.add_argument("--force", action="store_true", help="recompute frames that are already done")
    p.add_argument("--overlays", type=Path, default=None,
                   help="also write overlay PNGs (masks over the image, score below) into this folder "
                        "(one subfolder per drive when several drives are given)")
    p.add_argument("--out", type=Path, default=None,
                   help="write masks here instead of DRIVE/image_02/motion_masks (one drive only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args, rest = _parser().parse_known_args(argv)
    overrides = []
    for item in rest:
        if item.startswith("-") or "=" not in item:
            _parser().error(f"unrecognised argument {item!r} (overrides look like key=value)")
        overrides.append(item)
    # argparse puts key=value tokens into `drives` when they come before the options
    drives = []
    for d in args.drives:
        if "=" in d.name and not d.exists():
            overrides.append(str(d))
        else:
            drives.append(d)
    if not drives:
        _parser().error("no drive directory given")
    if args.out is not None and len(drives) > 1:
        _parser().error("--out works with one drive only")
    cfg_path = args.config if args.config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    try:
        cfg = load_motion_config(cfg_path, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = 0
    for d in drives:
        ov = args.overlays
        if ov is not None and len(drives) > 1:
            ov = ov / d.name
        try:
            s = process_drive(d, cfg, force=args.force, out_dir=args.out, overlays=ov, progress=not args.quiet)
        except (MotionInputError, KittiFormatError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{d}: {s.processed} frame(s) processed, {s.skipped} skipped, {len(s.unknown)} unknown "
              f"({s.ms_per_frame:.0f} ms/frame) -> {s.out_dir}")
        if s.unknown:
            print(f"  unknown (ego-motion failed, no PNG): {', '.join(s.unknown[:10])}"
                  f"{' ...' if len(s.unknown) > 10 else ''}")
    return status


if __name__ == "__main__":
    sys.exit(main())
