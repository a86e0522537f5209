"""The test views of ``effvid eval`` and ``effvid predict``: the same options, checked the same
way (clips x crops of each video, logits averaged), and the same loading options."""

from __future__ import annotations

import argparse

from ..cli import UserError, positive_int, worker_count


def add_view_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clips", type=positive_int, default=1,
                   help="clips per video, logits averaged (default: %(default)s)")
    p.add_argument("--crops", type=int, default=1, choices=(1, 3, 10),
                   help="crops per clip: 1 (centre), 3 (left/centre/right along the long side) or "
                        "10 (corners and centre, and their mirror images) (default: %(default)s)")
    p.add_argument("--twice", action="store_true", help="add a second clip at segment starts")
    p.add_argument("--sampling", choices=("segment", "dense"), default=None,
                   help="frame sampling (default: as trained)")
    p.add_argument("--num-segments", type=positive_int, default=None, help="frames per clip (default: as trained)")
    p.add_argument("--size", type=positive_int, default=None, help="crop size (default: as trained)")
    p.add_argument("--scale-size", type=positive_int, default=None,
                   help="short side of the frames the crops are cut from, for any --crops (default: "
                        "as trained, or size x 256/224 rounded down with --size; --size 256 --scale-size 256 is "
                        "the original's --full_res)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="videos per batch (default: %(default)s)")
    p.add_argument("--workers", type=worker_count, default=2,
                   help="decoding processes (0: decode in this one) (default: %(default)s)")


def check_views(args: argparse.Namespace, meta: dict) -> None:
    """Refuse a protocol that cannot be, naming the flags as typed (the dataset's own checks
    named its fields, after the data was read)."""
    from ..inference import test_view

    view = test_view(meta, size=args.size, scale_size=args.scale_size, sampling=args.sampling)
    if args.twice and view["sampling"] != "segment":
        given = "--sampling dense" if args.sampling else "this checkpoint's dense sampling"
        raise UserError(f"--twice (a second clip at the segment starts) needs segment sampling, "
                        f"not {given}")
    if view["scale_size"] < view["size"]:
        raise UserError(f"--scale-size {view['scale_size']} is below the crop size {view['size']} "
                        "(--size): the short side must be at least the crop's")


def view_protocol(args: argparse.Namespace, meta: dict, num_segments: int) -> dict:
    """The test protocol as --json records it (eval's and predict's): the views' options with
    the checkpoint's values for those not given, and the views each video gets."""
    from ..inference import test_view

    view = test_view(meta, size=args.size, scale_size=args.scale_size, sampling=args.sampling)
    return {"clips": args.clips, "crops": args.crops, "twice": args.twice, "sampling": view["sampling"],
            "num_segments": num_segments, "size": view["size"], "scale_size": view["scale_size"],
            "views": (args.clips + int(args.twice)) * args.crops}


def trained_with_flips(checkpoint: str, meta: dict) -> bool | None:
    """Whether the checkpoint was trained with random horizontal flips: as its metadata says,
    else (a checkpoint from before that was recorded) its run folder's config.json; None when
    neither tells."""
    if "flip" in meta.get("extra", {}):
        return bool(meta["extra"]["flip"])
    from .eval import run_config_beside

    try:
        cfg = run_config_beside(checkpoint)
    except ValueError:  # an unreadable config.json: unknown
        return None
    return None if cfg is None else cfg.flip


def mirrored_views_note(checkpoint: str, meta: dict, crops: int) -> str | None:
    """A note for 10 crops (5 of them mirrored) of a model trained without flips, which were
    turned off because mirroring changes its labels ("moving something left"), or None."""
    if crops != 10 or trained_with_flips(checkpoint, meta) is not False:
        return None
    return (f"note: {checkpoint} was trained without horizontal flips, and 5 of the 10 crops are "
            "mirror images, in which left and right change places (a label such as 'moving "
            "something left' then shows the opposite): --crops 3 has no mirrored views")
