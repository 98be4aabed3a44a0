"""Pre-merged per-agent tables of sealed buckets, for range queries over the whole fleet.

A bucket is sealed once no flush can write into it any more (a grace period after its end, see
`TrafficHistory`); its rows never change after that. So the per-agent table of a run of sealed
buckets, once merged, can be kept and reused. The runs kept are the aligned blocks of a segment
tree over each tier's buckets (block `(k, j)` holds buckets `j·2^k … (j+1)·2^k − 1`), built on
demand from the rows of the buckets a query needs, every block built on the way kept too:

- a range of n buckets is at most 2·log2(n) blocks, whatever the range;
- a window that slides by a bucket reuses all but a few blocks (its new edge blocks are the
  halves of blocks it used before, or were built from the newly sealed buckets);
- a merge is exact (`RollupTable`), so the result is the same as merging the rows themselves.

The merge of a query's ranges is kept too, decoded (`DecodedTable`): a dashboard asks for the
same range every refresh, and its sealed part only changes when another bucket seals, so a
refresh decodes and merges just the newer rows into it.

Memory is bounded by `budget` bytes (least recently used blocks go first). The cache belongs to
one process: a write into a sealed bucket through this process's `TrafficHistory` drops the
blocks holding it; other processes writing late into a sealed bucket are what the grace period
is sized against.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from agentgate._core import DecodedTable, RollupTable

__all__ = ["BlockLoader", "SealedTables", "blocks", "runs"]

# decoded whole-query tables kept (the few ranges dashboards and alert rules keep asking for)
_DECODED_KEPT = 8

# (step, [(first bucket, end bucket), …]) → the table of each bucket that has rows
BlockLoader = Callable[[int, list[tuple[int, int]]], Awaitable[dict[int, RollupTable]]]

_EMPTY = RollupTable()


def blocks(i0: int, i1: int) -> list[tuple[int, int]]:
    """The aligned blocks `(k, j)` covering bucket indices `[i0, i1)`, in order."""
    out = []
    while i0 < i1:
        k = (i0 & -i0).bit_length() - 1 if i0 else 62
        while (1 << k) > i1 - i0:
            k -= 1
        out.append((k, i0 >> k))
        i0 += 1 << k
    return out


def runs(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs `[first, end)` of a set of integers."""
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


class SealedTables:
    """Tables of aligned blocks of sealed buckets, built on demand, kept within a byte budget."""

    def __init__(self, load: BlockLoader, budget: int = 128 * 1024 * 1024) -> None:
        self._load = load
        self.budget = budget
        # (step, k, j): block (k, j) of tier `step`
        self._blocks: OrderedDict[tuple[int, int, int], RollupTable] = OrderedDict()
        self._decoded: OrderedDict[tuple[tuple[int, int, int], ...], DecodedTable] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.built = 0
        self.loaded_buckets = 0

    async def decoded(self, spans: Iterable[tuple[int, int, int]]) -> DecodedTable:
        """The decoded table of the union of sealed ranges `(step, start, end)`."""
        key = tuple(spans)
        t = self._decoded.get(key)
        if t is not None:
            self._decoded.move_to_end(key)
            self.hits += 1
            return t
        parts = [part for sp in key for part in await self.tables(*sp)]
        t = DecodedTable(parts[0] if len(parts) == 1 else RollupTable.merged(parts))  # [] → empty
        self._decoded[key] = t
        self.nbytes += t.nbytes
        while len(self._decoded) > _DECODED_KEPT:
            self.nbytes -= self._decoded.popitem(last=False)[1].nbytes
        self._trim()
        return t

    async def tables(self, step: int, start: int, end: int) -> list[RollupTable]:
        """Tables whose union is buckets `[start, end)` of tier `step` (all sealed)."""
        want = blocks(start // step, end // step)
        have: dict[tuple[int, int], RollupTable] = {}
        leaves: set[int] = set()

        def plan(k: int, j: int) -> None:
            t = self._blocks.get((step, k, j))
            if t is not None:
                self._blocks.move_to_end((step, k, j))
                have[(k, j)] = t
                self.hits += 1
            elif k == 0:
                leaves.add(j)
            else:
                plan(k - 1, 2 * j)
                plan(k - 1, 2 * j + 1)

        for k, j in want:
            plan(k, j)
        loaded: dict[int, RollupTable] = {}
        if leaves:
            spans = [(a * step, b * step) for a, b in runs(leaves)]
            loaded = await self._load(step, spans)
            self.loaded_buckets += len(leaves)

        # `have` keeps the blocks planned on alive even if another query evicts them meanwhile
        def build(k: int, j: int) -> RollupTable:
            t = have.get((k, j))
            if t is None:
                if k == 0:
                    t = loaded.get(j * step, _EMPTY)
                else:
                    t = RollupTable.merged([build(k - 1, 2 * j), build(k - 1, 2 * j + 1)])
                    self.built += 1
                have[(k, j)] = t
                self._put((step, k, j), t)
            return t

        return [build(k, j) for k, j in want]

    def _put(self, key: tuple[int, int, int], t: RollupTable) -> None:
        old = self._blocks.pop(key, None)
        if old is not None:
            self.nbytes -= old.nbytes
        self._blocks[key] = t
        self.nbytes += t.nbytes
        self._trim()

    def _trim(self) -> None:
        while self.nbytes > self.budget and (self._blocks or self._decoded):
            if self._blocks:
                self.nbytes -= self._blocks.popitem(last=False)[1].nbytes
            else:
                self.nbytes -= self._decoded.popitem(last=False)[1].nbytes

    def invalidate(self, step: int, bucket: int) -> None:
        """Forget what holds `bucket` of tier `step` (it was written after sealing)."""
        i = bucket // step
        self._drop(lambda st, k, j: st == step and (i >> k) == j)

    def drop_before(self, step: int, cutoff: int) -> None:
        """Forget what starts before bucket `cutoff` of tier `step` (expired rows)."""
        self._drop(lambda st, k, j: st == step and (j << k) * step < cutoff)

    def _drop(self, hit: Callable[[int, int, int], bool]) -> None:
        for key in [key for key in self._blocks if hit(*key)]:
            self.nbytes -= self._blocks.pop(key).nbytes
        # decoded queries are rebuilt from the blocks left (rare: late writes and expiry)
        for t in self._decoded.values():
            self.nbytes -= t.nbytes
        self._decoded.clear()

    def clear(self) -> None:
        """Forget everything."""
        self._blocks.clear()
        self._decoded.clear()
        self.nbytes = 0
