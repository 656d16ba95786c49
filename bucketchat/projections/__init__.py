"""The projections sync's results feed: the stored timeline and the search index.

    timeline/  timeline_rows: what ``log``, ``thread`` and the chat show
    search/    the tantivy index of current message text

They live one level down so that ``bucketchat.timeline`` and ``bucketchat.search`` stay
the Python API's functions (``bucketchat/__init__.py``): a subpackage of those names
would replace them as attributes of the package the moment it was imported.
"""
