"""Upstream's full project listing (XML-RPC ``list_packages_with_serial``), parsed
as it streams in.

PyPI answers with one struct of ~740,000 members (~35 MB of XML). Parsed by
``xmlrpc.client`` it becomes a stack of every name and serial, then a dict of them,
then records: ~270 MB at 600,000 projects, the largest memory peak of any sync. This
parser folds each member into the two maps a first sync needs as soon as the member
closes, so only those maps are ever whole in memory.

It accepts exactly the shape Warehouse sends (``methodResponse/params/param/value/
struct/member/{name, value/int}``) and a fault (``methodResponse/fault/value/struct``
of scalar members, raised as :class:`xmlrpc.client.Fault`, as ``xmlrpc.client``
does). Anything else, a document type declaration included, is a
MalformedResponseError.
"""

from __future__ import annotations

import logging
import xmlrpc.client
from dataclasses import dataclass, field
from xml.parsers import expat

from packaging.utils import NormalizedName

from mirror.errors import MalformedResponseError
from mirror.models import Serial, project_name

logger = logging.getLogger(__name__)

# The parser's states: where in the document the element just opened is. An element
# is accepted only where _NEXT has a state for it under its parent's.
(
    _TOP,
    _RESPONSE,
    _PARAMS,
    _PARAM,
    _RESULT,
    _STRUCT,
    _MEMBER,
    _NAME,
    _VALUE,
    _SCALAR,
    _FAULT,
    _FAULT_VALUE,
    _FAULT_STRUCT,
    _FAULT_MEMBER,
    _FAULT_NAME,
    _FAULT_MEMBER_VALUE,
    _FAULT_SCALAR,
) = range(17)
_SCALARS = ("int", "i4", "i8", "string", "boolean", "double")
_NEXT: dict[tuple[int, str], int] = {
    (_TOP, "methodResponse"): _RESPONSE,
    (_RESPONSE, "params"): _PARAMS,
    (_PARAMS, "param"): _PARAM,
    (_PARAM, "value"): _RESULT,
    (_RESULT, "struct"): _STRUCT,
    (_STRUCT, "member"): _MEMBER,
    (_MEMBER, "name"): _NAME,
    (_MEMBER, "value"): _VALUE,
    **{(_VALUE, tag): _SCALAR for tag in _SCALARS},
    (_RESPONSE, "fault"): _FAULT,
    (_FAULT, "value"): _FAULT_VALUE,
    (_FAULT_VALUE, "struct"): _FAULT_STRUCT,
    (_FAULT_STRUCT, "member"): _FAULT_MEMBER,
    (_FAULT_MEMBER, "name"): _FAULT_NAME,
    (_FAULT_MEMBER, "value"): _FAULT_MEMBER_VALUE,
    **{(_FAULT_MEMBER_VALUE, tag): _FAULT_SCALAR for tag in _SCALARS},
}


@dataclass(frozen=True, slots=True)
class Listing:
    """Every project upstream lists, by normalized name."""

    serials: dict[NormalizedName, Serial] = field(default_factory=dict)
    """Each project's last serial."""
    display_names: dict[NormalizedName, str] = field(default_factory=dict)
    """Each project's name as upstream spells it."""


class ListingParser:
    """Feed the body of a ``list_packages_with_serial`` answer in chunks of any size,
    then :meth:`close` for the listing.

    Names that are not valid project names are skipped with a warning (no mirror could
    hold them); a member whose value is not a serial is a MalformedResponseError. When
    a name appears twice (two spellings of one project), the last one wins.
    """

    def __init__(self) -> None:
        self._listing = Listing()
        self._fault: dict[str, int | str] = {}
        self._states = [_TOP]
        self._text: list[str] = []
        self._name: str | None = None
        self._value: int | str | None = None
        self._seen_struct = False
        self._parser = expat.ParserCreate()
        self._parser.buffer_text = True
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._parser.CharacterDataHandler = self._text.append
        self._parser.StartDoctypeDeclHandler = self._refuse_doctype

    def feed(self, chunk: bytes) -> None:
        """Parse the next piece of the body. Raises MalformedResponseError."""
        self._parse(chunk, final=False)

    def close(self) -> Listing:
        """The listing, once the whole body was fed. Raises MalformedResponseError, or
        :class:`xmlrpc.client.Fault` when upstream answered with a fault."""
        self._parse(b"", final=True)
        if self._fault:
            code = self._fault.get("faultCode")
            text = self._fault.get("faultString", "")
            raise xmlrpc.client.Fault(code if isinstance(code, int) else -1, str(text))
        if not self._seen_struct:
            raise _malformed("expected a struct")
        return self._listing

    def _parse(self, data: bytes, *, final: bool) -> None:
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as exc:
            raise MalformedResponseError(
                f"XML-RPC list_packages_with_serial: unparseable response: {exc!r}"
            ) from exc

    def _refuse_doctype(self, *_: object) -> None:
        raise _malformed("a document type declaration is not allowed")

    def _start(self, tag: str, _attributes: dict[str, str]) -> None:
        parent = self._states[-1]
        state = _NEXT.get((parent, tag))
        if state is None:
            if parent == _RESULT:
                raise _malformed(f"expected a struct, got <{tag}>")
            raise _malformed(f"unexpected <{tag}>")
        if state == _STRUCT:
            self._seen_struct = True
        self._states.append(state)
        self._text.clear()

    def _end(self, tag: str) -> None:
        state = self._states.pop()
        if state in (_SCALAR, _FAULT_SCALAR):
            self._value = _scalar(tag, "".join(self._text))
        elif state in (_NAME, _FAULT_NAME):
            self._name = "".join(self._text)
        elif state in (_VALUE, _FAULT_MEMBER_VALUE):
            if self._value is None:  # a <value> without a type is a string
                self._value = "".join(self._text)
        elif state in (_MEMBER, _FAULT_MEMBER):
            self._member(fault=state == _FAULT_MEMBER)
        self._text.clear()

    def _member(self, *, fault: bool) -> None:
        name, value = self._name, self._value
        self._name = self._value = None
        if name is None or value is None:
            raise _malformed("a struct member needs a name and a value")
        if fault:
            self._fault[name] = value
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _malformed(f"[{name!r}]: expected a serial, got {value!r}")
        try:
            normalized = project_name(name)
        except MalformedResponseError:
            logger.warning("upstream lists an invalid project name %r; skipped", name)
            return
        self._listing.serials[normalized] = Serial(value)
        self._listing.display_names[normalized] = name


def _scalar(tag: str, text: str) -> int | str:
    """The value of a typed scalar: an int (a bool for ``<boolean>``) when it is one,
    else the text, which is refused as a serial with the text in the message."""
    try:
        if tag in {"int", "i4", "i8"}:
            return int(text.strip())
        if tag == "boolean":
            return bool(int(text.strip()))
    except ValueError:
        pass
    return text


def _malformed(problem: str) -> MalformedResponseError:
    return MalformedResponseError(f"XML-RPC list_packages_with_serial: {problem}")
