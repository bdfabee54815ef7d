#!/usr/bin/env python3
"""Raw NCCL all-reduce time on this machine's GPUs through PyTorch (no mixserve): the sizes of
a tensor-parallel Mixtral step's partial sums ([T, 4096] float32 / bf16). Compares against
MIXSERVE_COMM_TIMING's in-step numbers (which include waiting for the slower rank).
Usage (two GPUs): NCCL_NVLS_ENABLE=0 python3 tools/nccl_allreduce_probe.py"""
import os
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank: int, world: int) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29611")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    for tokens in (64, 1024, 2650, 8192):
        for dt in (torch.float32, torch.bfloat16):
            x = torch.ones(tokens, 4096, dtype=dt, device="cuda")
            for _ in range(5):
                dist.all_reduce(x)
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            n = 50
            for _ in range(n):
                dist.all_reduce(x)
            b.record()
            torch.cuda.synchronize()
            us = a.elapsed_time(b) / n * 1e3
            mb = x.numel() * x.element_size() / 2**20
            if rank == 0:
                print(f"all_reduce [{tokens}, 4096] {str(dt)[6:]:8s} {mb:7.1f} MiB {us:8.1f} us "
                      f"{x.numel() * x.element_size() / us / 1e3:6.1f} GB/s (algbw)", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(2,), nprocs=2)
