"""Test support: a fake PyPI over loopback HTTP and real distribution files.

Used by the integration tests, the benchmarks and the offline quick start
(``python3 -m mirror.testing``). Nothing here ever talks to a real index.
"""

from mirror.testing.corpus import corpus_name, generate_corpus
from mirror.testing.distributions import make_provenance, make_sdist, make_wheel
from mirror.testing.faults import FaultPlan, parse_fault_plan
from mirror.testing.upstream import FakeUpstream, InjectedFault, JournalEntry, RawAnswer, negotiate

__all__ = [
    "FakeUpstream",
    "FaultPlan",
    "InjectedFault",
    "JournalEntry",
    "RawAnswer",
    "corpus_name",
    "generate_corpus",
    "make_provenance",
    "make_sdist",
    "make_wheel",
    "negotiate",
    "parse_fault_plan",
]
