"""Full-text search over current message text: a tantivy index beside the cache.

    syntax.py    folding, terms, the query syntax and snippets (pure, no tantivy)
    index.py     the index and its catch-up with ``timeline_rows``
    searcher.py  queries and ranked hits
"""
