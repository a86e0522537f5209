"""effvid.runtime: keeping freed memory so activations do not page-fault in on every forward."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from effvid import runtime

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")

# Page faults of a steady-state forward pass of a ResNet-18 on 12 images of 224x224 (its largest
# activations, 12x64x112x112 floats = 39 MB, are above glibc's largest adaptive mmap threshold).
# The fewest over three passes after two warm-ups: now and then one retained pass grows the heap
# by a few thousand pages when freed blocks happen to be laid out badly for it (seen in about 1
# run in 6), while with glibc's defaults every pass faults its large activations in again.
_PROBE = textwrap.dedent("""
    import resource, sys, torch
    from torchvision.models import resnet18
    import effvid
    if sys.argv[1] == "retain":
        assert effvid.retain_freed_memory()
    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    x = torch.randn(12, 3, 224, 224)
    with torch.inference_mode():
        model(x)
        model(x)
        faults = []
        for _ in range(3):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            model(x)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(min(faults))
""")


def _steady_forward_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_retained_memory_is_reused_without_page_faults():
    default = _steady_forward_faults("default")
    retained = _steady_forward_faults("retain")
    # glibc's default unmaps the freed activations, so each forward faults them in again
    # (tens of thousands of 4 kB pages); retained, the memory of the last forward is reused.
    assert default > 5000, default
    assert retained < default / 20, (retained, default)


def test_opt_out_by_environment(monkeypatch):
    called = []
    monkeypatch.setattr(runtime, "retain_freed_memory", lambda: called.append(1) or True)
    monkeypatch.setenv(runtime.ENV_VAR, "0")
    assert runtime.retain_freed_memory_unless_disabled() is False and not called
    monkeypatch.setenv(runtime.ENV_VAR, "1")
    assert runtime.retain_freed_memory_unless_disabled() is True and called


def test_bad_threshold():
    with pytest.raises(ValueError, match="threshold_bytes"):
        runtime.retain_freed_memory(0)


def test_describe_device_counts_threads_in_words():
    # under torchrun each process gets one thread: it said "cpu (1 threads)"
    import torch

    from effvid.runtime import describe_device

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe_device(torch.device("cpu"), None) == "cpu (1 thread)"
        torch.set_num_threads(2)
        assert describe_device(torch.device("cpu"), None) == "cpu (2 threads)"
    finally:
        torch.set_num_threads(before)
