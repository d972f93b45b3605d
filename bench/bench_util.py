"""Helpers the benches share (imported as a sibling module: `python bench/<name>.py` puts bench/ on
sys.path, and the tests add it)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch


@contextmanager
def torch_threads(n: Optional[int] = None) -> Iterator[None]:
    """Run the block with torch's intra-op pool at n threads (None: as it is) and give the pool back as
    found. The pool is process-global: a bench called in-process (by a test in a pytest-xdist worker
    that runs on one thread) must not leave it oversubscribing the machine for every later test."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
