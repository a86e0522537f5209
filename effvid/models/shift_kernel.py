"""The temporal shift as one GPU kernel (Triton), for CUDA tensors.

The eager shift (:func:`effvid.models.temporal_shift._shift_eager`) writes each element once but
issues five kernels and about ten tensor views per call. On a GPU that cost is the CPU's, not
the memory's: in a batch-1 TSM-ResNet-50 forward the 16 shifts took ~80 us each against the
~12 us their bytes need (docs/benchmarks.md). Here one kernel reads each output element's source
(its own frame, or the neighbour its channel group takes) and writes it, zeros where the
neighbour is outside the clip. The backward pass is the same kernel with the offsets negated.

Used automatically for contiguous CUDA tensors when Triton is importable (it comes with
PyTorch's CUDA wheels). If the kernel cannot be built or launched (Triton needs a C compiler the
first time), effvid warns once and uses the eager shift from then on. Set
``EFFVID_SHIFT_KERNEL=eager`` to never use it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import warnings

import torch

_disabled_reason: str | None = None if os.environ.get("EFFVID_SHIFT_KERNEL", "") != "eager" else "EFFVID_SHIFT_KERNEL=eager"
_kernels = None


def _build():
    import triton
    import triton.language as tl

    @triton.jit
    def shift_copy(x_ptr, out_ptr, rows, hw, channels, segments, fold, off0, off1,
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
    def shift_in_place(x_ptr, saved_ptr, hw, channels, segments, fold, moved, off0, off1,
                       RESTORE: tl.constexpr, TB: tl.constexpr, COLS: tl.constexpr):
        # One program owns all T frames of one shifted channel of one clip (COLS pixels), so it
        # can read them all before it overwrites any (the barrier). The shift by +-1 drops one
        # frame per channel (frame 0 when reading from the future, T-1 from the past): that
        # frame goes to ``saved``, and RESTORE puts everything back from there.
        pid = tl.program_id(0)
        n = (pid // moved).to(tl.int64)
        c = pid % moved
        shift_off = tl.where(c < fold, off0, off1)
        dropped = tl.where(shift_off > 0, 0, segments - 1)
        off = -shift_off if RESTORE else shift_off
        t = tl.arange(0, TB)
        col = tl.program_id(1) * COLS + tl.arange(0, COLS)
        col_ok = col < hw
        frame = channels.to(tl.int64) * hw  # a clip can exceed 2**31 elements where a frame does not
        base = x_ptr + n * segments * frame + c * hw
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

    return shift_copy, shift_in_place


def _tile(hw: int, elements: int = 4096, rows_at_least: int = 1) -> tuple[int, int]:
    """(ROWS, COLS): COLS covers a row's pixels up to ``elements / rows_at_least``, ROWS fills a
    tile of ~``elements``."""
    cols = min(elements // rows_at_least, 1 << max(hw - 1, 0).bit_length())
    return max(rows_at_least, elements // cols), cols


def _get_kernels():
    global _kernels
    if _kernels is None:
        _kernels = _build()
    return _kernels


def launch(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...],
           out: torch.Tensor | None = None) -> torch.Tensor:
    """The shift of a contiguous (N*T, C, H, W) tensor by one kernel launch. Works on any device
    Triton runs on (CUDA; the CPU under ``TRITON_INTERPRET=1``, which the tests use)."""
    shift_copy = _get_kernels()[0]
    nt, c, h, w = x.shape
    out = torch.empty_like(x) if out is None else out
    rows, hw = nt * c, h * w
    if rows == 0 or hw == 0:
        return out
    rows_per_tile, cols = _tile(hw)
    grid = (-(-rows // rows_per_tile), -(-hw // cols))
    off1 = offsets[1] if len(offsets) > 1 else 0
    with _device_of(x):
        shift_copy[grid](x, out, rows, hw, c, num_segments, fold, offsets[0], off1,
                         NGROUPS=len(offsets), ROWS=rows_per_tile, COLS=cols)
    return out


def _device_of(x: torch.Tensor):
    # Triton launches on the current CUDA device: a tensor on another GPU (--device cuda:1 in
    # one process) needs that device made current for the launch
    if x.is_cuda and x.device.index is not None and x.device.index != torch.cuda.current_device():
        return torch.cuda.device(x.device)
    return contextlib.nullcontext()


def launch_in_place(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...],
                    saved: torch.Tensor | None = None) -> torch.Tensor:
    """Shift the channel groups of a contiguous (N*T, C, H, W) tensor in place and return what
    :func:`launch_restore` needs to undo it (the frames the shift dropped, 1/T of the moved
    channels). Each moved element is read and written once and the unshifted channels are not
    touched: with fold_div 8 this and the restore together move half the bytes of a shifted
    copy."""
    return _in_place(x, num_segments, fold, offsets, saved, restore=False)


def launch_restore(x: torch.Tensor, saved: torch.Tensor, num_segments: int, fold: int,
                   offsets: tuple[int, ...]) -> None:
    """Undo :func:`launch_in_place`: ``x`` holds exactly its values from before again."""
    _in_place(x, num_segments, fold, offsets, saved, restore=True)


def _in_place(x, num_segments, fold, offsets, saved, restore):
    if any(abs(o) != 1 for o in offsets):
        raise ValueError(f"the in-place shift moves channels by one frame, got offsets {offsets}")
    shift_in_place = _get_kernels()[1]
    nt, c, h, w = x.shape
    n, hw, moved = nt // num_segments, h * w, len(offsets) * fold
    if saved is None:
        saved = x.new_empty((n, moved, h, w))
    if n == 0 or hw == 0 or moved == 0:
        return saved
    tb = 1 << max(num_segments - 1, 0).bit_length()
    _, cols = _tile(hw, rows_at_least=tb)
    off1 = offsets[1] if len(offsets) > 1 else 0
    with _device_of(x):
        shift_in_place[(n * moved, -(-hw // cols))](x, saved, hw, c, num_segments, fold, moved, offsets[0], off1,
                                                    RESTORE=restore, TB=tb, COLS=cols)
    return saved


def available(x: torch.Tensor) -> bool:
    """Whether :func:`shift` will use the kernel for ``x``."""
    if _disabled_reason is not None or not x.is_cuda or not x.is_contiguous():
        return False
    return _triton_installed()


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def shift(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...]) -> torch.Tensor | None:
    """The kernel's shifted copy of ``x``, or None where it is not used (the caller then shifts
    in eager mode). A kernel that fails to build or launch is turned off for the process, with
    a warning that says why."""
    return _guarded(launch, x, num_segments, fold, offsets) if available(x) else None


def shift_in_place(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...]) -> torch.Tensor | None:
    """:func:`launch_in_place` where the kernel is used, else None (nothing changed)."""
    return _guarded(launch_in_place, x, num_segments, fold, offsets) if available(x) else None


def _guarded(fn, *args):
    global _disabled_reason
    try:
        return fn(*args)
    except torch.OutOfMemoryError:
        raise
    except Exception as e:  # Triton's build errors have no common base class
        _disabled_reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        warnings.warn(f"effvid: the Triton temporal-shift kernel failed ({_disabled_reason}); "
                      "using the eager shift from now on", RuntimeWarning, stacklevel=3)
        return None


class disabled:
    """``with shift_kernel.disabled():`` shifts in eager mode inside the block (benchmarks
    compare the two; a suspected kernel problem can be ruled out this way)."""

    def __enter__(self):
        global _disabled_reason
        self._saved, _disabled_reason = _disabled_reason, _disabled_reason or "disabled()"
        return self

    def __exit__(self, *exc):
        global _disabled_reason
        _disabled_reason = self._saved
        return False
