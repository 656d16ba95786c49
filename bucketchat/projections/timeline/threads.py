"""Threads: every reply's root and depth from the (child, parent) links of a room.

A reply whose parent chain loops is its own root with no thread (PROTOCOL.md §6). The walk
is pointer jumping over Arrow arrays, so chains of any length settle in log2(nodes) rounds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bucketchat.cache import Cache

THREAD_LINKS = """
SELECT src, target, target_id FROM q_rel
WHERE src_type IN ('m.room.message', 'm.room.member')
  AND target_type IN ('m.room.message', 'm.room.member')
"""


def thread_roots(
    parents: Iterable[tuple[int, int]],
) -> dict[int, tuple[int, int]]:
    """Map every reply to (root, depth) from (child, parent) links; roots map to themselves.

    A reply whose parent chain loops is its own root with no thread (PROTOCOL.md §6): its
    entry is absent. Roots with at least one reply appear as (root, 0).
    """
    import pyarrow as pa

    parent = dict(parents)
    walk = walk_threads(
        pa.array(list(parent), type=pa.int64()), pa.array(list(parent.values()), type=pa.int64())
    )
    return {
        int(seq): (int(root), int(depth))
        for seq, root, depth in zip(
            walk["seq"].to_pylist(),
            walk["thread_seq"].to_pylist(),
            walk["depth"].to_pylist(),
            strict=True,
        )
    }


def walk_threads(children: Any, parents: Any) -> Any:
    """thread_roots on Arrow int64 arrays of distinct children and their parents, as a
    table of (seq, thread_seq, depth, reply_count, link): ``link`` is the index of a link
    whose parent is the row's root. A Python walk over dicts took most of a second at
    150k links.

    Pointer jumping: every node holds an ancestor and its distance, and each round jumps
    to the ancestor's ancestor, so chains of any length settle in log2(nodes) rounds. A
    node ends on a root (a node with no parent) unless its chain loops: a node on or
    leading into a loop ends on a node that has a parent, however many rounds run.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    replies = len(children)
    # Node i is link i's child; the parents that are no link's child come after them.
    tops = pc.unique(pc.filter(parents, pc.invert(pc.is_in(parents, value_set=children))))
    nodes = pa.concat_arrays([children, tops])
    parent_node = pc.cast(pc.index_in(parents, value_set=nodes), pa.int64())
    up = pa.concat_arrays([parent_node, pa.array(range(replies, len(nodes)), type=pa.int64())])
    dist = pa.array([1] * replies + [0] * len(tops), type=pa.int64())
    for _ in range(len(nodes).bit_length() + 1):
        dist = pc.add(dist, pc.take(dist, up))
        jumped = pc.take(up, up)
        if jumped.equals(up):
            break
        up = jumped
    reply_up = up.slice(0, replies)
    resolved = pc.greater_equal(reply_up, replies)  # ends on a node with no parent
    reply_roots = pc.filter(reply_up, resolved)
    counted = pc.value_counts(reply_roots)
    roots = counted.field("values")
    links = pc.index_in(roots, value_set=parent_node)
    threaded = pa.table(
        {
            "seq": pc.filter(children, resolved),
            "thread_seq": pc.take(nodes, reply_roots),
            "depth": pc.cast(pc.filter(dist.slice(0, replies), resolved), pa.int32()),
            "reply_count": pa.array([0] * len(reply_roots), type=pa.int32()),
            "link": pc.take(links, pc.index_in(reply_roots, value_set=roots)),
        }
    )
    root_seqs = pc.take(nodes, roots)
    return pa.concat_tables(
        [
            threaded,
            pa.table(
                {
                    "seq": root_seqs,
                    "thread_seq": root_seqs,
                    "depth": pa.array([0] * len(roots), type=pa.int32()),
                    "reply_count": pc.cast(counted.field("counts"), pa.int32()),
                    "link": links,
                }
            ),
        ]
    )


def threads_table(cache: Cache) -> Any:
    import pyarrow.compute as pc

    links = cache.arrow(THREAD_LINKS)
    walk = walk_threads(links["src"].combine_chunks(), links["target"].combine_chunks())
    # a root is always some reply's parent, so a link names it
    root_ids = pc.take(links["target_id"], walk["link"])
    return walk.drop_columns(["link"]).append_column("thread_root", root_ids)
