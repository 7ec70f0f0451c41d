"""Counting the ATen operations a piece of code runs: a timing-free way to check that work is vectorised
(a Python loop over samples or sets multiplies the count; a batched op does not)."""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode


class CountOps(TorchDispatchMode):
    """Counts the ATen operations run while active (forward and autograd's backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))
