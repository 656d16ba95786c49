"""The audit: what the cache found wrong (PROTOCOL.md §7-8), as plain data.

    report.py  findings, per-chain status and room digests (``audit --format json``)
    locks.py   ``--check-lock``: which objects the bucket really keeps write-once
    bundle.py  ``verify``: re-checking an exported bundle offline, and the bundle format
"""
