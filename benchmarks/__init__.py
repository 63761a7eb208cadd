"""The benchmark of ``mirror sync`` against bandersnatch (issue 7); see README.md here.

Everything runs on 127.0.0.1 against the project's fake upstream: nothing here ever
contacts a real index.
"""
