"""``effvid convert SRC.pth DST.safetensors``: an original TSM release checkpoint as effvid weights.

The configuration (backbone, shift, segments, dense sampling) is read from the file name and
the weights, as ``effvid info SRC.pth`` shows it. The online demo's
``mobilenetv2_jester_online.pth.tar`` becomes a causal TSM-MobileNetV2, for effvid stream and
export. ``--classes FILE`` names the classes (a class
file as ``effvid train --classes`` reads: one name per line, UCF101's classInd.txt, labels.json);
without it they are numbered. The result works with eval, predict, export, stream and info.
To fine-tune on other classes, ``effvid train --init-weights SRC.pth`` reads the release file
itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import HelpFormatter, UserError, plural, positive_int


def run(args: argparse.Namespace) -> int:
    from ..models.tsm_checkpoint import assumed_settings_note, convert_tsm_checkpoint, tsn_segments_note
    from ..models.weights import file_weights_kind, weights_not_found

    src, dst = Path(args.src), Path(args.dst)
    if not src.is_file():
        raise UserError(str(weights_not_found(src, "checkpoint")))
    if file_weights_kind(src) == "effvid":
        raise UserError(f"{src} is already an effvid checkpoint: there is nothing to convert; eval, predict, "
                        "export, stream and info take it as it is")
    if dst.suffix != ".safetensors":
        raise UserError(f"the output must be a .safetensors file, got {dst}")
    if dst.exists() and not args.overwrite:
        raise UserError(f"{dst} exists; --overwrite replaces it")
    overrides = {k: v for k, v in (("num_segments", args.num_segments), ("shift_div", args.shift_div))
                 if v is not None}
    info = convert_tsm_checkpoint(src, dst, classes=args.classes, **overrides)
    shift = (f", shift 1/{info.shift_div} {info.shift_place}" if info.shift else "")
    shift += " causal" if info.shift_direction == "causal" else ""  # the online demo's
    print(f"wrote {dst}: {info.model_name}, {plural(info.num_classes, 'class')}, "
          f"{plural(info.num_segments, 'segment')}{shift}, {'dense' if info.dense else 'segment'} sampling"
          + ("" if args.classes else " (classes numbered: --classes FILE names them)"))
    if note := assumed_settings_note(info):  # a renamed file: 8 segments, shift 1/8 are guesses
        print(note)
    if note := tsn_segments_note(info):  # the TSN baseline: _segment5, tested on 8
        print(note)
    return 0


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert an original TSM checkpoint (.pth) to .safetensors",
                       description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("src", help="original TSM/TSN release checkpoint (.pth), or the online demo's "
                               "mobilenetv2_jester_online.pth.tar")
    p.add_argument("dst", help="effvid weights file to write (.safetensors)")
    p.add_argument("--classes", metavar="FILE", help="class file naming the checkpoint's classes")
    p.add_argument("--num-segments", type=positive_int,
                   help="frames per clip, when the file name does not say (default: from the name, else 8)")
    p.add_argument("--shift-div", type=positive_int,
                   help="1/shift_div of the channels shift each way, when the file name does not say "
                   "(default: from the name, else 8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    p.set_defaults(func=run)
