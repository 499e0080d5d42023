"""The garbage collector, set for a process that loads once and then streams for hours.

CPython collects its youngest generation of container objects every 700 net allocations,
promotes what survives, and now and then walks every object it tracks. The daemon's heap
is large and most of it lives for minutes (open buckets and their authors and terms, the
history rings, the term models, the detectors): with 10,000 series, about 1.2 million
tracked objects, and a full collection stops the event loop for about a second.

``settle()`` is called by ``xwatch run`` and ``xwatch backtest`` once the process has
loaded what it keeps for good (its modules, the settings, rules and playbooks; the
daemon's pipeline too, and the detectors it restored from the store's checkpoint: with
10,000 series, about half the objects the collector would otherwise walk):

* it collects, then freezes what is left (``gc.freeze``: the modules alone are about
  130,000 objects), never walked again (still freed when no longer used; only a
  reference cycle among them would stay);
* the youngest generation is collected every ``GEN0_THRESHOLD`` allocations: fewer young
  collections, fewer survivors promoted to the old generations, fewer full collections.
  What a collection waits for is garbage in reference cycles only, which the pipeline
  hardly makes; everything else is freed as soon as it is no longer used, as before.

Measured (``bench/memory.py``: 10,008 series, 1,000 posts a second, the last minute of
the soak; this and CPython's defaults alternating, two runs each, one day): the
collector took 1.5 s of CPU a minute instead of 3.5-3.8 s, with one full collection
instead of three, and the longest pause was 0.70-0.73 s instead of 0.97-1.24 s; the
resident memory grew alike (+3.8-4.2 % in the minute against +3.7-7.8 %). The end-to-end
and in-process throughputs moved less than this machine's noise.

Settled once the restored detectors are in place (``Daemon(settle=...)``; the bench's
warm-up stands for the restore), the collector walks about 230,000 objects at the end of a
4-minute soak instead of about 900,000 (the detectors' 380,000 lists, 50,000 CUSUM runs,
40,000 calibration tails ... frozen; the open term buckets' counts are tuples of numbers,
which it stops tracking): its longest pause 0.24 s instead of 0.59 s, 0.78 s of the loop a
minute instead of 0.85 s (one run each, the same day; ``bench/memory.py`` reports it).

Nothing else changes (no object is kept or freed differently); the test suite leaves
the collector as CPython sets it (``tests/conftest.py``).
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000  # CPython's default is 700


def settle() -> None:
    """Freeze what the process has loaded, and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
