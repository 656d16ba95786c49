"""The sync engine: from the bucket into the cache, and the outbox back out.

    pull.py     list → plan → read → verify → store, and nothing more
    workers.py  reading and verifying files on a pool of worker processes
    reader.py   one file: split, parse, check the room, hash and verify every line
    store.py    transactions of whole files, and the files' own changes
    keys.py     key decisions per room (PROTOCOL.md §5), late verification
    report.py   what a sync reports
    push.py     the outbox → create-only uploads
    watch.py    noticing that a bucket may have changed

The steps after a pull (keys, timeline, search index) are chained by
``bucketchat.session``; nothing here imports the projections or the front ends.
"""
