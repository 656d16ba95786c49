"""The timeline projection: what ``log``, ``thread`` and the chat show, stored in the cache.

    refresh.py  timeline_rows kept in step with the events and key decisions
    append.py   the cheap path of a refresh: a room that only grew at its end
    threads.py  every reply's root and depth
    sql.py      the SQL both paths share
    read.py     pages, threads and room lists read from the stored rows
"""
