"""The streaming parser of ``list_packages_with_serial`` answers."""

from __future__ import annotations

import logging
import xmlrpc.client

import pytest
from packaging.utils import NormalizedName

from mirror.errors import MalformedResponseError
from mirror.listing import Listing, ListingParser


def parse(body: bytes, *, chunk: int = 65536) -> Listing:
    parser = ListingParser()
    for start in range(0, len(body), chunk):
        parser.feed(body[start : start + chunk])
    return parser.close()


def answer(value: dict[str, int] | list[list[str | int]] | str) -> bytes:
    """``value`` as ``xmlrpc.client`` (and so Warehouse) would answer it."""
    return xmlrpc.client.dumps((value,), methodresponse=True).encode()


def struct(members: str) -> bytes:
    """A hand-written answer: one struct with ``members`` (raw XML)."""
    return (
        "<?xml version='1.0'?><methodResponse><params><param><value><struct>"
        f"{members}</struct></value></param></params></methodResponse>"
    ).encode()


def test_every_member_lands_in_both_maps_whatever_the_chunk_boundaries() -> None:
    projects = {"Django": 40_000_000, "zope.interface": 7, "Foo_Bar": 0, "ünï": 3}
    body = answer(projects)
    whole = parse(body)
    assert whole.serials == {"django": 40_000_000, "zope-interface": 7, "foo-bar": 0}
    assert whole.display_names == {
        "django": "Django",
        "zope-interface": "zope.interface",
        "foo-bar": "Foo_Bar",
    }
    assert parse(body, chunk=1) == whole, "a boundary inside every tag and text"


def test_an_invalid_name_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mirror.listing"):
        listing = parse(answer({"-bad-": 1, "good": 2}))
    assert listing.serials == {"good": 2}
    assert "'-bad-'" in caplog.text


def test_integer_spellings_are_serials_and_a_name_seen_twice_keeps_the_last() -> None:
    listing = parse(
        struct(
            "<member><name>a</name><value><i4>1</i4></value></member>"
            "<member>\n  <name>b</name>\n  <value><i8> 2 </i8></value>\n</member>"
            "<member><name>B</name><value><int>3</int></value></member>"
        )
    )
    assert listing.serials == {"a": 1, "b": 3}
    assert listing.display_names[NormalizedName("b")] == "B"


def test_an_empty_struct_is_an_empty_listing() -> None:
    assert parse(answer({})) == Listing()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ("<member><name>a</name><value>12</value></member>", "['a']: expected a serial, got '12'"),
        (
            "<member><name>a</name><value><string>1</string></value></member>",
            "['a']: expected a serial, got '1'",
        ),
        (
            "<member><name>a</name><value><boolean>1</boolean></value></member>",
            "expected a serial, got True",
        ),
        (
            "<member><name>a</name><value><double>1.5</double></value></member>",
            "expected a serial, got '1.5'",
        ),
        ("<member><name>a</name><value><int>x</int></value></member>", "got 'x'"),
        ("<member><name>a</name><value><int>-1</int></value></member>", "got -1"),
        ("<member><value><int>1</int></value></member>", "needs a name and a value"),
        ("<member><name>a</name></member>", "needs a name and a value"),
        (
            "<member><name>a</name><value><array><data/></array></value></member>",
            "unexpected <array>",
        ),
        ("<member><name>a</name><value><int>1</int></value><x/></member>", "unexpected <x>"),
    ],
)
def test_a_member_that_is_not_a_name_and_a_serial_is_refused(members: str, message: str) -> None:
    with pytest.raises(MalformedResponseError, match="list_packages_with_serial") as caught:
        parse(struct(members))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (answer([["a", 1]]), "expected a struct, got <array>"),
        (answer("text"), "expected a struct, got <string>"),
        (
            b"<methodResponse><params><param><value>text</value></param></params></methodResponse>",
            "expected a struct",
        ),
        (b"<methodResponse><params/></methodResponse>", "expected a struct"),
        (b"<html><body>Service Unavailable</body></html>", "unexpected <html>"),
        (b"<methodResponse><params><param>", "unparseable response"),
        (b"\xff\xfe not xml", "unparseable response"),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>'
            b"<methodResponse><params><param><value><struct><member><name>&lol;</name>"
            b"<value><int>1</int></value></member></struct></value></param></params>"
            b"</methodResponse>",
            "document type declaration",
        ),
    ],
)
def test_an_answer_that_is_not_one_struct_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse(body)
    assert message in str(caught.value)


def test_a_fault_is_raised_as_xmlrpc_client_raises_it() -> None:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(-32500, "RuntimeError: no"), methodresponse=True)
    with pytest.raises(xmlrpc.client.Fault) as caught:
        parse(body.encode(), chunk=7)
    assert (caught.value.faultCode, caught.value.faultString) == (-32500, "RuntimeError: no")


def test_a_fault_without_a_code_still_raises() -> None:
    body = (
        b"<methodResponse><fault><value><struct><member><name>faultString</name>"
        b"<value>busy</value></member></struct></value></fault></methodResponse>"
    )
    with pytest.raises(xmlrpc.client.Fault) as caught:
        parse(body)
    assert (caught.value.faultCode, caught.value.faultString) == (-1, "busy")
