"""Process-group plumbing, kept in one place so the training loop runs unchanged under torchrun.

A single process is the world of size 1: every helper here works without torch.distributed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, RandomSampler, Sampler, SequentialSampler

from ..errors import UserError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # init_distributed created the process group, so it ends it
    # the tensors this process gave to collectives, until the backend lets go of them (_sent)
    in_flight: list = field(default_factory=list, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistEnv:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistEnv()
    owns = not dist.is_initialized()  # a caller's own group is left to the caller
    if owns:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")), owns)


def process_device(device: torch.device, env: DistEnv) -> torch.device:
    """This process's device: under torchrun on GPUs, ``cuda:LOCAL_RANK`` (made current)."""
    if not (env.distributed and device.type == "cuda"):
        return device
    # One past the last GPU met CUDA's "invalid device ordinal". Every process of the machine
    # checks, so that its first one, which reports errors (cli.reports_errors), says why.
    on_this_machine = int(os.environ.get("LOCAL_WORLD_SIZE", env.local_rank + 1))
    if on_this_machine > torch.cuda.device_count():
        raise UserError(f"torchrun started {on_this_machine} processes on this machine, which has "
                        f"{torch.cuda.device_count()} GPU(s): give --nproc-per-node at most "
                        f"{torch.cuda.device_count()} (one process per GPU), or --device cpu")
    device = torch.device("cuda", env.local_rank)
    torch.cuda.set_device(device)
    return device


def close_distributed(env: DistEnv) -> None:
    """End a finished run's process group. The barrier keeps every process until the main one
    has written its last file; a process that exited with the group still open while another
    was still using it was aborted by gloo ("terminate called without an active exception"),
    which failed the whole torchrun job after a complete run."""
    if env.distributed and env.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    _wait_for_release(env)


def _sent(env: DistEnv, *tensors: torch.Tensor) -> None:
    """Remember tensors given to a collective until gloo's worker threads have dropped them.

    A gloo thread drops a finished collective's tensors a moment after the caller saw it finish
    (or later still: a barrier keeps the collectives before it alive), and dropping a tensor made
    in Python takes the GIL. A process that had reached interpreter shutdown by then was aborted
    ("terminate called without an active exception"), which failed a complete torchrun job about
    one run in ten on a loaded machine. close_distributed waits for these drops before returning.
    """
    env.in_flight[:] = [t for t in env.in_flight if t._use_count() > 1]  # those still held
    env.in_flight.extend(tensors)


def _wait_for_release(env: DistEnv, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    # sleeping releases the GIL, which the gloo threads need for the drops
    while any(t._use_count() > 1 for t in env.in_flight) and time.monotonic() < deadline:
        time.sleep(0.001)
    env.in_flight.clear()


class ShardSampler(Sampler[int]):
    """Every world_size-th index, starting at rank: the processes see disjoint shards that
    together are the dataset once. For evaluation, where DistributedSampler's padding (repeating
    samples so that every process gets as many) would count some clips twice."""

    def __init__(self, dataset, env: DistEnv):
        self.indices = range(env.rank, len(dataset), env.world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_sampler(dataset, env: DistEnv, *, shuffle: bool, seed: int):
    """The one place that decides which samples this process sees, in which order: shuffled
    for training (every process gets as many batches, as DDP's lock-step needs), in order and
    each sample exactly once for evaluation."""
    if env.distributed and shuffle:
        return DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank,
                                  shuffle=True, seed=seed, drop_last=False)
    if env.distributed:
        return ShardSampler(dataset, env)
    if shuffle:
        return RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    return SequentialSampler(dataset)


def set_sampler_epoch(sampler, epoch: int, seed: int) -> None:
    """Make each epoch's order depend only on (seed, epoch), so resumed runs repeat it."""
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler):
        sampler.generator.manual_seed(seed * 1000003 + epoch)


def broadcast_buffers(model: torch.nn.Module, env: DistEnv) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics). DDP copies them
    only at the start of each training forward, so after the last step each process holds its
    own; evaluation would then differ between processes, and from the weights rank 0 saves."""
    if env.distributed:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)  # the model keeps its buffers: nothing for _sent


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        _sent(env, tensor)
    return tensor


def any_process(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """Whether ``flag`` is true on any process (all processes must call it)."""
    if not env.distributed:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    _sent(env, t)
    return bool(t.item())


def all_gather_objects(obj, env: DistEnv) -> list:
    """Every process's ``obj``, in rank order. The objects travel as JSON (numbers, strings,
    lists, dicts; tuples arrive as lists), also in a single process, not as pickles as in
    ``dist.all_gather_object``, and in tensors made here, so that _sent can follow them."""
    if not env.distributed:  # the same round trip, so that one process sees what several do
        return [json.loads(json.dumps(obj))]
    # NCCL moves only GPU tensors, each process's on its own GPU (this may run before
    # process_device has made it the current one)
    device = torch.device("cuda", env.local_rank) if dist.get_backend() == "nccl" else "cpu"
    data = torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8).to(device, copy=True)
    size = torch.tensor([len(data)], device=device)
    sizes = [torch.zeros_like(size) for _ in range(env.world_size)]
    dist.all_gather(sizes, size)
    longest = max(int(s) for s in sizes)
    padded = torch.cat([data, data.new_zeros(longest - len(data))])
    parts = [torch.empty_like(padded) for _ in range(env.world_size)]
    dist.all_gather(parts, padded)
    _sent(env, size, *sizes, padded, *parts)
    return [json.loads(p[:int(s)].cpu().numpy().tobytes()) for p, s in zip(parts, sizes)]
