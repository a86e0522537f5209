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

import functools
import importlib.util
import os
import warnings

import torch

_disabled_reason: str | None = None if os.environ.get("EFFVID_SHIFT_KERNEL", "") != "eager" else "EFFVID_SHIFT_KERNEL=eager"
_kernel = None


def _build():
    import triton
    import triton.language as tl

    @triton.jit
    def shift_kernel(x_ptr, out_ptr, rows, hw, channels, segments, fold, off0, off1,
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

    return shift_kernel


def _tile(hw: int) -> tuple[int, int]:
    """(ROWS, COLS): COLS covers a row's pixels up to 1024, ROWS fills a tile of ~4096 elements."""
    cols = min(1024, 1 << max(hw - 1, 0).bit_length())
    return max(1, 4096 // cols), cols


def launch(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...],
           out: torch.Tensor | None = None) -> torch.Tensor:
    """The shift of a contiguous (N*T, C, H, W) tensor by one kernel launch. Works on any device
    Triton runs on (CUDA; the CPU under ``TRITON_INTERPRET=1``, which the tests use)."""
    global _kernel
    if _kernel is None:
        _kernel = _build()
    nt, c, h, w = x.shape
    out = torch.empty_like(x) if out is None else out
    rows, hw = nt * c, h * w
    if rows == 0 or hw == 0:
        return out
    rows_per_tile, cols = _tile(hw)
    grid = (-(-rows // rows_per_tile), -(-hw // cols))
    off1 = offsets[1] if len(offsets) > 1 else 0
    _kernel[grid](x, out, rows, hw, c, num_segments, fold, offsets[0], off1,
                  NGROUPS=len(offsets), ROWS=rows_per_tile, COLS=cols)
    return out


def available(x: torch.Tensor) -> bool:
    """Whether :func:`shift` will use the kernel for ``x``."""
    if _disabled_reason is not None or not x.is_cuda or not x.is_contiguous():
        return False
    return _triton_installed()


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def shift(x: torch.Tensor, num_segments: int, fold: int, offsets: tuple[int, ...]) -> torch.Tensor | None:
    """The kernel's shift of ``x``, or None where it is not used (the caller then shifts in
    eager mode). A kernel that fails to build or launch is turned off for the process, with a
    warning that says why."""
    global _disabled_reason
    if not available(x):
        return None
    try:
        return launch(x, num_segments, fold, offsets)
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
