"""Can these atom counts be placed on a space group's Wyckoff positions? (the counting a grammar cannot hold)

A Wyckoff text is consistent when every element's count is a sum of the multiplicities of the sites it
occupies, where a position with free parameters can hold any number of sites and a position without (a
fixed point, ``Position.fixed``) holds at most one, and the conventional cell has at most ``max_atoms`` times
its lattice points (MP-20: at most 20 atoms in the primitive cell). The constrained sampler asks this before
every choice (an element and its count in the formula, a space group, a site's element and position), so a
text that keeps to the answers can always be finished: the sampler never reaches a dead end.

The answer depends on a group only through its multiplicities (free ones, and the multiset of fixed ones), so
groups that share them share the cache; texts of one run share most of their questions too.
"""

from __future__ import annotations

from functools import lru_cache

from plaidpp.constraint.spacegroups import space_groups

FREE_SUM_LIMIT = 400  # atoms of one element in a conventional cell (MP-20: at most 80)


@lru_cache(maxsize=None)
def _free_multiplicities(number: int) -> tuple[int, ...]:
    return tuple(sorted({p.multiplicity for p in space_groups()[number].positions if not p.fixed}))


@lru_cache(maxsize=None)
def _free_sums(free: tuple[int, ...]) -> frozenset[int]:
    """Totals up to ``FREE_SUM_LIMIT`` that positions with these multiplicities make (any number of each)."""
    reachable = {0}
    for total in range(1, FREE_SUM_LIMIT + 1):
        if any(total - m in reachable for m in free):
            reachable.add(total)
    return frozenset(reachable)


@lru_cache(maxsize=65_536)
def fixed_multiplicities(number: int, used: frozenset[str] = frozenset()) -> tuple[int, ...]:
    """Multiplicities of group ``number``'s fixed points not yet occupied (``used`` labels), sorted."""
    return tuple(sorted(p.multiplicity for p in space_groups()[number].positions if p.fixed and p.label not in used))


def _sub_multisets(items: tuple[int, ...], budget: int) -> list[tuple[int, ...]]:
    """Every sub-multiset of ``items`` (sorted) whose sum is at most ``budget``, the empty one first."""
    out: list[tuple[int, ...]] = [()]
    for value in sorted(set(items)):
        copies = items.count(value)
        grown = []
        for subset in out:
            for k in range(1, copies + 1):
                if sum(subset) + k * value > budget:
                    break
                grown.append(subset + (value,) * k)
        out += grown
    return out


def _without(items: tuple[int, ...], taken: tuple[int, ...]) -> tuple[int, ...]:
    rest = list(items)
    for m in taken:
        rest.remove(m)
    return tuple(rest)


@lru_cache(maxsize=200_000)
def _leftovers(free: tuple[int, ...], counts: tuple[int, ...], fixed: tuple[int, ...]) -> frozenset[tuple[int, ...]]:
    """The fixed points (multiplicities) that can remain free after placing elements with these sorted
    counts; empty when they cannot be placed at all."""
    if not counts:
        return frozenset([fixed])
    first, rest = counts[0], counts[1:]
    sums = _free_sums(free)
    out: set[tuple[int, ...]] = set()
    for taken in _sub_multisets(fixed, first):  # equal multiplicities are interchangeable
        if first - sum(taken) in sums:
            out |= _leftovers(free, rest, _without(fixed, taken))
    return frozenset(out)


def fits(number: int, counts, used: frozenset[str] = frozenset(), max_atoms: int | None = None) -> bool:
    """Whether elements with ``counts`` (atoms still to place) fit group ``number`` with the fixed points
    ``used`` taken; ``max_atoms`` bounds the primitive cell."""
    counts = tuple(sorted(int(c) for c in counts if c))
    if max_atoms is not None and sum(counts) > max_atoms * space_groups()[number].centering:
        return False
    return bool(_leftovers(_free_multiplicities(number), counts, fixed_multiplicities(number, used)))


@lru_cache(maxsize=None)
def _sorted_free_sums(free: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(_free_sums(free)))


@lru_cache(maxsize=100_000)
def _next_counts(free: tuple[int, ...], counts: tuple[int, ...], fixed: tuple[int, ...], limit: int) -> frozenset[int]:
    sums = _sorted_free_sums(free)
    out: set[int] = set()
    for rest in _leftovers(free, counts, fixed):
        for taken in _sub_multisets(rest, limit):
            base = sum(taken)
            for f in sums:
                if base + f > limit:
                    break
                out.add(base + f)
    out.discard(0)
    return frozenset(out)


def next_counts(number: int, counts: tuple[int, ...], max_atoms: int) -> frozenset[int]:
    """Counts one more element may have in group ``number`` next to elements with these sorted counts."""
    limit = max_atoms * space_groups()[number].centering - sum(counts)
    if limit < 1:
        return frozenset()
    return _next_counts(_free_multiplicities(number), counts, fixed_multiplicities(number), limit)


def signature(number: int) -> tuple:
    """What feasibility depends on: the centring, free multiplicities and fixed ones (groups sharing it are
    interchangeable here)."""
    return (space_groups()[number].centering, _free_multiplicities(number), fixed_multiplicities(number))

