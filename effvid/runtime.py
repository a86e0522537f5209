"""Where and how models run: the device a command asks for, and process-wide settings that
make PyTorch on the CPU faster.

:func:`resolve_device` turns ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a
torch device, or a ValueError that names the value; :func:`describe_device` is the line a
command prints about it.

With glibc's default malloc, every large tensor (above a threshold that adapts up to 32 MB) is
a fresh ``mmap`` that is unmapped again when freed, and freed heap memory above 128 KB is
trimmed back to the OS. The next forward pass then page-faults every page of its activations
back in, and the kernel zeroes each one. For video models, whose activations are tens of MB,
this costs a lot: on the 2-core development VM a TSN-MobileNetV2 forward at 8x224x224 took
91-96 ms with glibc's defaults and 50-55 ms with freed memory retained, ResNet-50 ~330 vs 245-260 ms (2026-11-22),
and a TSM-ResNet50 training step 20% less (``benchmarks/bench_tsm_vs_tsn.py`` measures both).

:func:`retain_freed_memory` tells malloc to keep freed memory for reuse, as PyTorch's CUDA
caching allocator does on the GPU. The process then holds on to its peak memory. The
``effvid`` command calls it at start-up unless ``EFFVID_RETAIN_FREED_MEMORY=0``; the library
never changes process settings on import, so scripts call it themselves (or use jemalloc or
tcmalloc, or set ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3

ENV_VAR = "EFFVID_RETAIN_FREED_MEMORY"


def retain_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Make glibc malloc serve blocks below ``threshold_bytes`` from its heap and keep freed
    memory instead of returning it to the OS. Returns True if applied, False where the C
    library is not glibc (macOS, Windows, musl), where nothing is changed.
    """
    if threshold_bytes <= 0:
        raise ValueError(f"threshold_bytes must be positive, got {threshold_bytes}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only (musl has mallopt as a no-op stub)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    value = min(int(threshold_bytes), 2**31 - 1)
    # Both are needed: either one alone also turns off the adaptive threshold, which is slower.
    return bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, value))


def retain_freed_memory_unless_disabled() -> bool:
    """What the command line does at start-up: :func:`retain_freed_memory` unless the
    environment variable ``EFFVID_RETAIN_FREED_MEMORY`` is ``0``."""
    if os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return retain_freed_memory()


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (taskset, a container's cpuset), which
    ``os.cpu_count()`` (every CPU of the machine) overstates."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bounded_workers(workers: int) -> tuple[int, str | None]:
    """``--workers`` (data-loading or encoding processes) at most the usable CPUs, and a note
    when it was lowered (else None). ``--workers 1000`` forked ~960 decoding processes, which
    only competed for the CPUs, and a SIGTERM took minutes to stop them all."""
    limit = usable_cpus()
    if workers <= limit:
        return workers, None
    return limit, (f"note: --workers {workers} lowered to {limit}, the CPUs this process can use "
                   "(more worker processes than CPUs only compete for them)")


def cpu_out_of_memory(error: BaseException) -> str | None:
    """What failed when ``error`` is PyTorch's CPU allocator running out of memory, for a
    message ("an allocation of 60.0 GB failed"), else None. It raises a RuntimeError ("[enforce
    fail at alloc_cpu.cpp:127] ... DefaultCPUAllocator: can't allocate memory: you tried to
    allocate 60000000000 bytes"), which a DataLoader worker's error repeats in its message."""
    text = str(error)
    if not isinstance(error, RuntimeError) or "DefaultCPUAllocator: can't allocate memory" not in text:
        return None
    size = re.search(r"you tried to allocate (\d+) bytes", text)
    return f"an allocation of {int(size[1]) / 1e9:,.1f} GB failed" if size else "an allocation failed"


DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str):
    """``auto`` (the first GPU if CUDA has one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``
    as a :class:`torch.device`. Anything else, or a GPU this machine does not have, is a
    ValueError whose message starts with the value (callers say where it came from)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name!r}: use {DEVICE_CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":  # mps, xpu, ...: nothing of effvid has been run there
        raise ValueError(f"{name!r}: effvid runs on the CPU or on CUDA GPUs; use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ValueError(f"{name!r}: CUDA is not available (no NVIDIA GPU, driver or CUDA build of "
                         "torch); use cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(f"{name!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def describe_device(device, precision=None) -> str:
    """E.g. ``cuda:0 (NVIDIA H200, bfloat16 autocast)`` or ``cpu (2 threads)``; ``precision`` is
    the autocast dtype (None: float32)."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        mode = {None: "float32", torch.bfloat16: "bfloat16 autocast",
                torch.float16: "float16 autocast with loss scaling"}[precision]
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}, {mode})"
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' * (threads != 1)})"
