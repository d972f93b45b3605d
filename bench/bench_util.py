"""Helpers the benches share (imported as a sibling module: `python bench/<name>.py` puts bench/ on
sys.path, and the tests add it)."""
from __future__ import annotations

import os
import re
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


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def section_link(doc: str, section: str) -> str:
    """A markdown link (from the README) to the section of `doc` (a path from the repository root)
    whose `## ` heading starts with `section`, by GitHub's anchor rules; an error if there is none, so
    a renamed section cannot leave a dead link in a table a bench prints."""
    with open(os.path.join(REPO, doc)) as f:
        heads = [ln[3:].strip() for ln in f if ln.startswith("## ")]
    found = [h for h in heads if h.startswith(section)]
    if not found:
        raise SystemExit(f"{doc} has no section starting with {section!r}")
    anchor = re.sub(r"[^a-z0-9 -]", "", found[0].lower()).replace(" ", "-")
    return f"[{section}]({doc}#{anchor})"
