"""Memory of a backfill: bounded by its threads and queues, not by how many pages it has read."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

# A backfill in a fresh process, then a probe of glibc's mmap threshold. glibc raises the
# threshold to the size of every mapped block freed (up to 32 MiB), after which page bodies are
# carved from its arenas and kept there once freed, so RSS grows with the pages read
# (core/process.py, fix_mmap_threshold, which the entry points call). So: free a 24 MiB block,
# then see whether a 16 MiB one still gets a mapping of its own. A fresh process holds no free
# chunk that large, so it is mapped exactly when the threshold did not move; this test's own
# process, after other tests, may hold one.
CHILD = """
import ctypes, json, sys
from orchestration.extract import sync_stripe
{entry_point}

class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2 (<malloc.h>, glibc 2.33+)
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
sync_stripe(sys.argv[1], sys.argv[2], api_base=sys.argv[3], max_rps=1000)
freed = bytearray(24 << 20)
del freed
before = mallinfo2().hblks
probe = bytearray(16 << 20)
print(json.dumps({"mapped_blocks_added": mallinfo2().hblks - before}))
"""


# What each entry point does before it syncs: the CLI's sync and run commands call the function;
# the Dagster code location calls it when it is loaded.
ENTRY_POINTS = {
    "fix_mmap_threshold": "from orchestration.core.process import fix_mmap_threshold\n"
    "fix_mmap_threshold()",
    "dagster code location": "import orchestration.defs.definitions",
}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the fix is for glibc's malloc")
@pytest.mark.parametrize("entry_point", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_backfill_keeps_large_buffers_out_of_malloc_arenas(
    emulator_factory, database_url, entry_point
) -> None:
    emu = emulator_factory(customers=200, seed=21)
    script = CHILD.replace("{entry_point}", entry_point)
    child = subprocess.run(
        [sys.executable, "-c", script, database_url, emu.test_key, emu.url],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(child.stdout.splitlines()[-1]) == {"mapped_blocks_added": 1}
