"""The temporal shift as Triton kernels, for CUDA tensors.

The eager shift (:func:`effvid.models.temporal_shift._shift_eager`) writes each element once but
issues five kernels and about ten tensor views per call. On a GPU that cost is the CPU's, not
the memory's: in a batch-1 TSM-ResNet-50 forward the 16 shifts took ~80 us each against the
~12 us their bytes need (docs/benchmarks.md). Two kernels replace it:

* a **copy**: one launch reads each output element's source (its own frame, or the neighbour its
  channel group takes) and writes it, zeros where the neighbour is outside the clip. The
  backward pass is the same kernel with the offsets negated.
* an **in-place shift and its restore**, for inference on large inputs
  (:func:`use_in_place`): only the moved channel groups are read and written, and the one frame
  per channel that the shift drops is kept aside so that the restore can put every value back.
  Together they move half the bytes of a copy.

Used automatically for contiguous CUDA tensors when Triton is importable (it comes with
PyTorch's CUDA wheels). If a kernel cannot be built or launched (Triton needs a C compiler the
first time), effvid warns once and uses the eager shift from then on. Set
``EFFVID_SHIFT_KERNEL=eager`` to never use them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
import warnings

import torch

# Why the kernels are off for this process (None: they are on).
_off_reason: str | None = "EFFVID_SHIFT_KERNEL=eager" if os.environ.get("EFFVID_SHIFT_KERNEL", "") == "eager" else None
_kernels = None

# The in-place pair moves half the bytes of a copy but launches twice; on the H200 it only paid
# off for inputs of tens of MB (ResNet-50 at batch 8), and cost a little below that (batch 1,
# MobileNetV2): docs/benchmarks.md.
IN_PLACE_MIN_BYTES = 32 << 20
_MAX_SEGMENTS_IN_PLACE = 1024  # one program holds all T frames of its pixels


def _build():
    import triton
    import triton.language as tl

    @triton.jit
    def copy_kernel(x_ptr, out_ptr, rows, hw, channels, segments, fold, off0, off1,
                    NGROUPS: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr):
        # A tile of ROWS (frame, channel) rows by COLS pixels of the (N*T*C, H*W) view. The
        # channel and frame of a row are computed once per row, not per element.
        row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        col = tl.program_id(1) * COLS + tl.arange(0, COLS)
        c = row % channels
        t = (row // channels) % segments
        off = tl.where(c < fold, off0, 0)
        if NGROUPS == 2:
            off = tl.where((c >= fold) & (c < 2 * fold), off1, off)
        src_t = t + off
        row_ok = (row < rows) & (src_t >= 0) & (src_t < segments)
        src_row = (row + off * channels).to(tl.int64)
        col_ok = col < hw
        src = x_ptr + src_row[:, None] * hw + col[None, :]
        v = tl.load(src, mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        dst = out_ptr + row.to(tl.int64)[:, None] * hw + col[None, :]
        tl.store(dst, v, mask=(row < rows)[:, None] & col_ok[None, :])

    @triton.jit
    def in_place_kernel(x_ptr, saved_ptr, hw, channels, segments, fold, moved, off0, off1,
                        RESTORE: tl.constexpr, TB: tl.constexpr, COLS: tl.constexpr):
        # One program owns all T frames of one moved channel of one clip (COLS pixels), so it
        # can read them all before it overwrites any (the barrier: on NVIDIA GPUs bar.sync
        # orders the block's earlier loads before its later stores; not relied on for ROCm,
        # see use_in_place). The shift by +-1 drops one frame per channel (frame 0 when
        # reading from the future, T-1 from the past): that frame goes to ``saved``, and
        # RESTORE puts everything back from there.
        pid = tl.program_id(0)
        n = (pid // moved).to(tl.int64)
        c = pid % moved
        shift_off = tl.where(c < fold, off0, off1)
        dropped = tl.where(shift_off > 0, 0, segments - 1)
        off = -shift_off if RESTORE else shift_off
        t = tl.arange(0, TB)
        col = tl.program_id(1) * COLS + tl.arange(0, COLS)
        col_ok = col < hw
        # (tl.cast: an argument equal to 1 arrives as a plain int constant)
        frame = tl.cast(channels, tl.int64) * hw  # a clip can exceed 2**31 elements where a frame does not
        base = x_ptr + n * segments * frame + tl.cast(c, tl.int64) * hw
        src_t = t + off
        ok = (t < segments) & (src_t >= 0) & (src_t < segments)
        v = tl.load(base + src_t[:, None] * frame + col[None, :], mask=ok[:, None] & col_ok[None, :], other=0.0)
        saved = saved_ptr + (n * moved + c) * hw + col
        if RESTORE:
            v = tl.where((t == dropped)[:, None], tl.load(saved, mask=col_ok)[None, :], v)
        else:
            tl.store(saved, tl.load(base + dropped * frame + col, mask=col_ok), mask=col_ok)
        tl.debug_barrier()
        tl.store(base + t[:, None] * frame + col[None, :], v, mask=(t < segments)[:, None] & col_ok[None, :])

    return copy_kernel, in_place_kernel


def _get_kernels():
    global _kernels
    if _kernels is None:
        _kernels = _build()
    return _kernels


def _cols(hw: int, elements: int) -> int:
    """Pixels per program: a power of two covering ``hw``, at most ``elements``."""
    return min(elements, 1 << max(hw - 1, 0).bit_length())


def _second_offset(offsets: tuple[int, ...]) -> int:
    if not 1 <= len(offsets) <= 2:
        raise ValueError(f"the shift kernels move one or two channel groups, got offsets {offsets}")
    return offsets[1] if len(offsets) == 2 else 0


def _device_of(x: torch.Tensor):
    # Triton launches on the current CUDA device: a tensor on another GPU (--device cuda:1 in
    # one process) needs that device made current for the launch
    if x.is_cuda and x.device.index is not None and x.device.index != torch.cuda.current_device():
        return torch.cuda.device(x.device)
    return contextlib.nullcontext()


def launch(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...]) -> torch.Tensor:
    """The shifted copy of a contiguous (N*T, C, H, W) tensor, one kernel launch. Works on any
    device Triton runs on (CUDA; the CPU under ``TRITON_INTERPRET=1``, which the tests use)."""
    off1 = _second_offset(offsets)
    nt, c, h, w = x.shape
    out = torch.empty_like(x)
    rows, hw = nt * c, h * w
    if rows == 0 or hw == 0:
        return out
    cols = _cols(hw, 1024)
    rows_per_program = 4096 // cols
    grid = (-(-rows // rows_per_program), -(-hw // cols))
    with _device_of(x):
        _get_kernels()[0][grid](x, out, rows, hw, c, num_segments, fold, offsets[0], off1,
                                NGROUPS=len(offsets), ROWS=rows_per_program, COLS=cols)
    return out


def launch_in_place(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...]) -> torch.Tensor:
    """Shift the channel groups of a contiguous (N*T, C, H, W) tensor in place. Returns
    ``saved``, what :func:`launch_restore` needs to undo it: the frame each moved channel
    dropped, (N, moved channels, H, W)."""
    nt, c, h, w = x.shape
    saved = x.new_empty((nt // num_segments, len(offsets) * fold, h, w))
    _in_place(x, saved, num_segments, fold, offsets, restore=False)
    return saved


def launch_restore(x: torch.Tensor, saved: torch.Tensor, num_segments: int, fold: int,
                   offsets: tuple[int, ...]) -> None:
    """Undo :func:`launch_in_place`: ``x`` holds exactly its values from before again."""
    _in_place(x, saved, num_segments, fold, offsets, restore=True)


def _in_place(x, saved, num_segments, fold, offsets, restore):
    off1 = _second_offset(offsets)
    if any(abs(o) != 1 for o in offsets):
        raise ValueError(f"the in-place shift moves channels by one frame, got offsets {offsets}")
    if num_segments > _MAX_SEGMENTS_IN_PLACE:
        raise ValueError(f"the in-place shift holds at most {_MAX_SEGMENTS_IN_PLACE} frames, got {num_segments}")
    nt, c, h, w = x.shape
    n, hw, moved = nt // num_segments, h * w, len(offsets) * fold
    if n == 0 or hw == 0 or moved == 0:
        return
    frames = 1 << max(num_segments - 1, 0).bit_length()
    cols = _cols(hw, max(1, 4096 // frames))
    with _device_of(x):
        _get_kernels()[1][(n * moved, -(-hw // cols))](x, saved, hw, c, num_segments, fold, moved, offsets[0], off1,
                                                       RESTORE=restore, TB=frames, COLS=cols)


def _restore_eager(x: torch.Tensor, saved: torch.Tensor, num_segments: int, fold: int,
                   offsets: tuple[int, ...]) -> None:
    """What the restore kernel does, in PyTorch: for when that kernel fails after the shift."""
    nt, c, h, w = x.shape
    x5 = x.view(nt // num_segments, num_segments, c, h, w)
    for g, off in enumerate(offsets):
        part = x5[:, :, g * fold:(g + 1) * fold]
        kept = saved[:, g * fold:(g + 1) * fold]
        if off > 0:  # frame t holds frame t+1's values; frame 0's are in saved
            part.copy_(torch.cat((kept[:, None], part[:, :-1]), dim=1))
        else:
            part.copy_(torch.cat((part[:, 1:], kept[:, None]), dim=1))


# -- what the model code calls ------------------------------------------------------------------


class _Local(threading.local):
    disabled_depth = 0


_local = _Local()


def available(x: torch.Tensor) -> bool:
    """Whether the kernels are used for ``x`` (in this thread, now)."""
    if (_off_reason is not None or _local.disabled_depth or not x.is_cuda or not x.is_contiguous()
            or type(x) is not torch.Tensor):  # (subclasses, fake tensors: the eager shift)
        return False
    return _triton_installed()


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def use_in_place(x: torch.Tensor, num_segments: int) -> bool:
    """Whether inference should shift ``x`` in place and back rather than copy it: large
    inputs (IN_PLACE_MIN_BYTES), NVIDIA GPUs (the kernel's read-before-write order rests on
    CUDA's barrier semantics, not checked on ROCm)."""
    return (available(x) and torch.version.hip is None and num_segments <= _MAX_SEGMENTS_IN_PLACE
            and x.numel() * x.element_size() >= IN_PLACE_MIN_BYTES)


def shift(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...]) -> torch.Tensor | None:
    """The kernel's shifted copy of ``x``, or None where it is not used (the caller then shifts
    in eager mode). A kernel that fails to build or launch is turned off for the process, with
    a warning that says why."""
    if not available(x):
        return None
    try:
        return launch(x, num_segments, fold, offsets)
    except Exception as e:
        _turn_off(e)
        return None


def shift_in_place(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...]) -> torch.Tensor | None:
    """:func:`launch_in_place` (returns ``saved``), or None if the kernel failed; ``x`` is then
    unchanged (a launch that fails writes nothing)."""
    try:
        return launch_in_place(x, num_segments, fold, offsets)
    except Exception as e:
        _turn_off(e)
        return None


def restore(x: torch.Tensor, saved: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...]) -> None:
    """:func:`launch_restore`; if that kernel fails (it is built separately, on first use),
    the values are put back in PyTorch and the kernels are turned off."""
    try:
        launch_restore(x, saved, num_segments, fold, offsets)
    except Exception as e:
        _restore_eager(x, saved, num_segments, fold, offsets)
        _turn_off(e)


def _turn_off(e: Exception) -> None:
    global _off_reason
    if isinstance(e, torch.OutOfMemoryError):
        raise e  # not the kernel's fault: the caller reports it as usual
    # Triton's build errors have no common base class
    _off_reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    warnings.warn(f"effvid: the Triton temporal-shift kernel failed ({_off_reason}); "
                  "using the eager shift from now on", RuntimeWarning, stacklevel=4)


def off_reason() -> str | None:
    """Why the kernels are off for this process (a failure, or EFFVID_SHIFT_KERNEL=eager), or None."""
    return _off_reason


@contextlib.contextmanager
def disabled():
    """``with shift_kernel.disabled():`` shifts in eager mode inside the block, in this thread
    (benchmarks compare the two; a suspected kernel problem can be ruled out this way)."""
    _local.disabled_depth += 1
    try:
        yield
    finally:
        _local.disabled_depth -= 1
