"""Test support: a fake PyPI over loopback HTTP and real distribution files.

Used by the integration tests, the benchmarks and the offline quick start
(``python3 -m mirror.testing``). Nothing here ever talks to a real index.
"""

from mirror.testing.corpus import corpus_name, generate_corpus
from mirror.testing.distributions import make_sdist, make_wheel
from mirror.testing.upstream import FakeUpstream, JournalEntry, negotiate

__all__ = [
    "FakeUpstream",
    "JournalEntry",
    "corpus_name",
    "generate_corpus",
    "make_sdist",
    "make_wheel",
    "negotiate",
]
