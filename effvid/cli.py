"""The ``effvid`` command line: one sub-command per module in :mod:`effvid.commands`.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func`` to the function that runs it. Errors a user can fix (a missing file, a bad value)
are printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import textwrap

COMMANDS = ("quickstart", "prepare", "check", "train", "eval", "predict", "info", "convert", "stream", "export")


# re-exported for the command modules
from effvid.errors import UserError, command_line, plural  # noqa: F401


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


# argparse types, so that "--topk -1" or "--clips 0" is refused before anything runs
positive_int = _int_at_least(1)      # counts and sizes
nonnegative_int = _int_at_least(0)


def worker_count(text: str) -> int:
    """``--workers`` of every command: processes, 0 or more, lowered to the usable CPUs with a
    note (effvid.runtime.bounded_workers)."""
    from effvid.runtime import bounded_workers

    workers, note = bounded_workers(nonnegative_int(text))
    if note and reports_errors():
        print(note, file=sys.stderr)
    return workers


# files that hold weights: --json and --jsonl never write over one
WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth", ".pth.tar", ".ckpt", ".onnx")


def results_file(text: str) -> str:
    """The FILE of --json (eval, predict, check) and --jsonl (stream), refused where the results
    would overwrite something else: a weights file or a video, by its name (the checkpoint a
    command had just read became 273 bytes of JSON); a file of a training run (its config.json,
    history.json, ...); and any other file that is there but holds no results of effvid (a list,
    annotation or class file). An earlier results file is overwritten: commands are run again."""
    from pathlib import Path

    from effvid.data.video import VIDEO_EXTENSIONS

    path = Path(text)
    if text.lower().endswith(WEIGHTS_SUFFIXES) or path.suffix.lower() in VIDEO_EXTENSIONS:
        what = "a video" if path.suffix.lower() in VIDEO_EXTENSIONS else "a weights file"
        raise argparse.ArgumentTypeError(f"{text} is {what}, and the output would overwrite it; "
                                         "name a .json file")
    if run := run_holding(path):
        raise argparse.ArgumentTypeError(f"{text} is a file of the training run in {run}, and the output "
                                         "would overwrite it; name another file")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    # a folder that is not there is made (write_results), as stream's and train's outputs are;
    # one that cannot be is refused now, not after the work (its results were lost). (A file
    # that is there, /dev/stdout too, is written in place: its folder's permissions do not count.)
    existing = next(p for p in path.absolute().parents if p.exists())
    if not path.exists() and not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is in {existing}, which is a file, not a folder")
    if not path.exists() and not os.access(existing, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text} is in {existing}, where this user may not write")
    # a FIFO or a device (/dev/stdout) is written to, not over
    if path.is_file() and not holds_results(path):
        raise argparse.ArgumentTypeError(f"{text} holds something other than effvid's results (it is "
                                         "no earlier --json or --jsonl output), and the output would "
                                         "overwrite it; name another file")
    return text


def write_results(path: str, text: str) -> None:
    """Write a --json or --jsonl FILE (checked by :func:`results_file`), making its folder."""
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def run_holding(path) -> str | None:
    """The folder of the training run whose file ``path`` names (there yet or not), else None."""
    from effvid.training.run_folder import RunWriter
    from effvid.training.run_lock import LOCK_NAME

    if path.name not in RunWriter.RUN_FILES:
        return None
    # a run folder, as effvid info tells one, or one whose run has not written yet (its lock)
    marks = ("config.json", "history.json", "last_state.pt", LOCK_NAME)
    return str(path.parent) if any((path.parent / name).is_file() for name in marks) else None


def holds_results(path) -> bool:
    """Whether the file ``path`` holds what --json or --jsonl wrote, or nothing: predict's list
    of videos, eval's or check's object, stream's JSON lines (the first is enough: a camera's
    may run to gigabytes)."""
    import json

    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20).strip()
            if not first:
                return not f.read(1 << 20).strip()  # empty, or blank lines only
            if not first.startswith((b"{", b"[")):  # a video, a list file: not read on
                return False
            try:
                line = json.loads(first)
            except ValueError:
                line = None
            if isinstance(line, dict) and {"source", "frame", "label"} <= line.keys():
                return True  # stream's
            f.seek(0)
            data = json.loads(f.read())
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        return False
    if isinstance(data, list):  # predict's
        return all(isinstance(d, dict) and "video" in d and ("top" in d or "error" in d) for d in data)
    return isinstance(data, dict) and ({"top1", "count", "classes"} <= data.keys()  # eval's
                                       or {"data", "videos", "unreadable", "per_class"} <= data.keys())  # check's


def device_arg(text: str):
    """``--device``: auto, cpu, cuda or cuda:N, checked against this machine (a torch.device)."""
    from effvid.runtime import resolve_device

    try:
        return resolve_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def device_name(text: str) -> str:
    """train's ``--device`` (a TrainConfig field): checked as :func:`device_arg` checks it, so
    that it is refused as the flag, as eval's is, and kept as typed (config.json keeps "auto")."""
    device_arg(text)
    return text


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--device`` of eval, predict and quickstart (train's is a TrainConfig field)."""
    parser.add_argument("--device", type=device_arg, default="auto",
                        help="auto (the GPU if there is one), cpu, cuda or cuda:N (default: auto)")


def plain_text(text: str) -> str:
    """A docstring's reST as a terminal shows it: ``:mod:`x```, ````x```` as x, "Examples::" as
    "Examples:" (the commands' descriptions are their modules' docstrings)."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return re.sub(r"::$", ":", text.replace("``", ""), flags=re.M)


def fill_paragraphs(text: str, width: int, indent: str = "") -> str:
    """``text``'s paragraphs (and its "* " items) filled to ``width``; an indented block (an
    example command) is kept as written. The docstrings' own line breaks, made for the source
    and its markup, broke --help's lines early."""
    blocks = []
    for block in re.split(r"\n[ \t]*\n", text.strip("\n")):
        lines = block.splitlines()
        if lines[0].startswith(" "):
            blocks.append("\n".join(indent + line for line in lines))
            continue
        items: list[list[str]] = []
        for line in lines:
            if not items or line.startswith(("* ", "- ")):
                items.append([])
            items[-1].append(line.strip())
        filled = []
        for item in items:
            bullet = item[0][:2] if item[0].startswith(("* ", "- ")) else ""
            # unbroken words: "--official-split" split at its hyphen read as two
            filled.append(textwrap.fill(" ".join(item)[len(bullet):], width, initial_indent=indent + bullet,
                                        subsequent_indent=indent + " " * len(bullet),
                                        break_on_hyphens=False, break_long_words=False))
        blocks.append("\n".join(filled))
    return "\n\n".join(blocks)


class HelpFormatter(argparse.HelpFormatter):
    """The commands' --help: descriptions (module docstrings) as plain text in filled paragraphs,
    example lines kept; option help without markup."""

    def _fill_text(self, text, width, indent):
        return fill_paragraphs(plain_text(text), width, indent)

    def _split_lines(self, text, width):
        return super()._split_lines(plain_text(text), width)


class CommandParser(argparse.ArgumentParser):
    """A command's parser. It keeps the words it was given, so that its refusal of a missing
    --checkpoint can name the checkpoint that was put among the videos: ``effvid predict a.mp4
    best.safetensors`` took the checkpoint for a second video, and said only that --checkpoint
    is required."""

    words: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self.words = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        if message.startswith("the following arguments are required") and "--checkpoint" in message:
            message += checkpoint_placement_hint(self, self.words)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    from effvid import __version__

    parser = argparse.ArgumentParser(
        prog="effvid", description="Efficient video understanding: TSM recognisers and "
        "parameter-efficient audio-visual transformers.")
    parser.add_argument("--version", action="version", version=f"effvid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CommandParser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"effvid.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"effvid.commands.{name}":
                raise
            continue  # command not available in this build
        module.register(sub)
    return parser


def reports_errors() -> bool:
    """Whether this process prints errors a user can fix. Under torchrun every process meets the
    same refusal (a bad value, a missing folder) and printed it once each: the first process on
    each machine reports it (another machine's files may differ), the others exit quietly with
    the same status. Outside a multi-process job (WORLD_SIZE unset or 1) every process reports:
    a RANK left in the environment by something else must not silence it."""
    if torchrun_processes() <= 1:
        return True
    return os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) == "0"


def torchrun_processes() -> int:
    """The processes of the torchrun job this one belongs to (its WORLD_SIZE); 1 outside one."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


# the commands that share their work among torchrun's processes; prepare refuses torchrun itself
SHARED_UNDER_TORCHRUN = ("train", "eval", "prepare")
# why a command runs in one process, where it says more than that
OWN_PROCESSES = {"check": "it uses --workers decoding processes itself",
                 "predict": "it uses --workers decoding processes itself",
                 "quickstart": "its training uses --workers data-loading processes itself"}


def refuse_torchrun(command: str) -> None:
    """Refuse a command that runs in one process, under torchrun: each process ran all of it,
    and printed and wrote everything once each (`torchrun ... -m effvid check` twice over)."""
    if torchrun_processes() > 1 and command not in SHARED_UNDER_TORCHRUN:
        own = OWN_PROCESSES.get(command)
        raise UserError(f"{command} runs in one process{f' ({own})' if own else ''}: run it without "
                        "torchrun (only train and eval share their work among torchrun's processes)")


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C in the first seconds of any command lands in an import of torch (build_parser
    # imports the commands); the package itself imports nothing heavy, so this catches it.
    try:
        return run_command(argv)
    except KeyboardInterrupt:
        return interrupted(argv)


def interrupted(argv: list[str] | None) -> int:
    """One line and status 130 (128 + SIGINT), as shells report a Ctrl-C, instead of a traceback."""
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if a in COMMANDS), None)
    if reports_errors():
        print(f"effvid{' ' + command if command else ''}: interrupted", file=sys.stderr)
    return 130


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that an argument the command does not know is refused
    by that command's parser, with its usage line: the top-level parser's refusal printed
    ``usage: effvid [-h] [--version] COMMAND ...``, which says nothing of the command's options."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        command = commands.choices[args.command]
        command.error(f"unrecognized arguments: {' '.join(unknown)}{checkpoint_placement_hint(command, unknown)}")
    return args


# the commands that take a checkpoint as an argument of their own (as their usage names it),
# not with --checkpoint
CHECKPOINT_ARGUMENT = {"info": "MODEL", "convert": "src"}


def checkpoint_placement_hint(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """For arguments a command does not take: where its checkpoint goes, when they put one in
    the other place. eval, predict, export and stream take it with --checkpoint (``effvid export
    best.safetensors`` was "unrecognized arguments: best.safetensors"); info and convert take it
    as an argument (``effvid info --checkpoint X``)."""
    options = {option for action in parser._actions for option in action.option_strings}
    if "--checkpoint" in options:
        weights = next((word for word in unknown if word.lower().endswith(WEIGHTS_SUFFIXES)), None)
        return f" ({parser.prog} takes a checkpoint with --checkpoint: --checkpoint {weights})" if weights else ""
    argument = CHECKPOINT_ARGUMENT.get(parser.prog.split()[-1])
    if argument and {"--checkpoint", "-c"} & set(unknown):
        return f" ({parser.prog} takes the checkpoint as its argument {argument}, without --checkpoint)"
    return ""


def run_command(argv: list[str] | None) -> int:
    args = parse_arguments(build_parser(), argv)
    from effvid.runtime import retain_freed_memory_unless_disabled

    retain_freed_memory_unless_disabled()  # up to 2-3x faster CPU forwards; see effvid/runtime.py
    from effvid.training.interrupts import ctrl_c_recorded

    try:
        refuse_torchrun(args.command)
        # Ctrl-C stops every command also when it comes as one forks its workers (interrupts.py)
        with ctrl_c_recorded():
            result = args.func(args)
        if sys.stdout is not None:  # None when started with standard output closed (>&-)
            sys.stdout.flush()
    except BrokenPipeError:  # "effvid stream ... | head": the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        # eval's and check's printed results (and their last lines' counts) were cut: 141 (128 +
        # SIGPIPE) as train's, not 0; stream and predict have shown what a pager asked for
        return 141 if args.command in ("eval", "check") else 0
    except RuntimeError as e:
        from effvid.runtime import cpu_out_of_memory

        failed = cpu_out_of_memory(e)  # this machine's memory: a traceback of 60 lines
        if type(e).__name__ != "OutOfMemoryError" and not failed:  # torch.OutOfMemoryError (CUDA's)
            raise
        if reports_errors() and failed:
            print(f"effvid {args.command}: error: this machine ran out of memory ({failed}); a smaller "
                  "--batch-size or --size needs less, and other processes hold memory too", file=sys.stderr)
        elif reports_errors():
            first = str(e).strip().splitlines()[0] if str(e).strip() else "out of memory"
            print(f"effvid {args.command}: error: the GPU ran out of memory ({first}); a smaller "
                  "--batch-size needs less, and other processes on the GPU hold memory too "
                  "(nvidia-smi lists them)", file=sys.stderr)
        return 1
    except (UserError, FileNotFoundError, ValueError) as e:
        message = str(e)
        if isinstance(e, OSError) and e.strerror and e.filename:  # without "[Errno 2]"
            name = str(e.filename)
            message = e.strerror if name in e.strerror else f"{e.strerror}: {name!r}"
        if reports_errors():
            print(f"effvid {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
