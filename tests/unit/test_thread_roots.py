"""Thread placement (PROTOCOL.md §6): timeline.threads.thread_roots, which jumps pointers on
Arrow arrays, against the plain rule walked one reply at a time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bucketchat.projections.timeline.threads import thread_roots


def walked(links: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Follow each reply's parents until a node without one (its root) or a repeat (a loop:
    no thread). Roots with at least one reply map to themselves at depth 0."""
    out: dict[int, tuple[int, int]] = {}
    for reply in links:
        seen = {reply}
        node, depth = links[reply], 1
        while node in links and node not in seen:
            seen.add(node)
            node, depth = links[node], depth + 1
        if node not in links:
            out[reply] = (node, depth)
    for root, _ in list(out.values()):
        out[root] = (root, 0)
    return out


@settings(max_examples=300, deadline=None)  # the first example imports pyarrow
@given(st.dictionaries(st.integers(1, 40), st.integers(1, 40), max_size=40))
def test_thread_roots_follows_the_rule(links: dict[int, int]) -> None:
    assert thread_roots(links.items()) == walked(links)


def test_long_chains_and_loops() -> None:
    chain = {n: n - 1 for n in range(1, 5000)}  # 4999 → … → 0
    loop = {10_000: 10_001, 10_001: 10_002, 10_002: 10_000, 10_003: 10_001}
    roots = thread_roots({**chain, **loop}.items())
    assert roots[4999] == (0, 4999) and roots[0] == (0, 0)
    assert not any(node in roots for node in loop)
    assert thread_roots([]) == {}
