"""The one-line machine description every benchmark prints first, so results can be compared."""

from __future__ import annotations

import argparse
import os
import platform


def describe_machine(*extra: str) -> str:
    """CPU model, core count, torch threads, load average, library versions; ``extra`` appended."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        load = f"load average {os.getloadavg()[0]:.2f}"
    except (OSError, AttributeError):
        load = "load average unknown"
    parts = [cpu, f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}", load,
             f"torch {torch.__version__}", f"Python {platform.python_version()}", platform.system(), *extra]
    return "; ".join(parts)


def repetitions(text: str) -> int:
    """argparse type of --reps / --repeats: a whole number >= 1 (0 ended in a ZeroDivisionError
    or an empty median after all the set-up)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def check_device(parser: argparse.ArgumentParser, name: str) -> None:
    """Exit with one line where ``--device name`` is not on this machine (effvid's own check,
    resolve_device): ``cuda`` without CUDA was torch's traceback at the first tensor."""
    from effvid.runtime import resolve_device

    try:
        resolve_device(name)
    except ValueError as e:
        parser.exit(2, f"{parser.prog}: error: --device {e}\n")
