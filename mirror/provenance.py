"""PEP 740 provenance documents: what the mirror accepts of them, decided without I/O.

A file's provenance (Warehouse's integrity API, ``/integrity/<project>/<version>/
<filename>/provenance``) is a JSON object::

    {"version": 1, "attestation_bundles": [{"publisher": {...}, "attestations": [
        {"version": 1, "verification_material": {...},
         "envelope": {"statement": "<base64 in-toto Statement>", "signature": "..."}}]}]}

The mirror keeps a copy beside the file, at ``<file>.provenance``
(:func:`mirror.layout.provenance_path`), served as :data:`PROVENANCE_MEDIA_TYPE`, and
its pages link that copy. :func:`check_provenance` is what a document must pass to be
kept: at most :data:`MAX_PROVENANCE_BYTES`, a JSON object and, with ``verify-provenance``,
every attestation's in-toto statement naming the file's sha256 among its subjects.
Signatures are not checked (that needs Sigstore's trust root, which an air-gapped
mirror does not have); clients that verify attestations do so against the copy.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Final

from mirror.errors import ProvenanceError

MAX_PROVENANCE_BYTES: Final = 1 << 20
"""Largest provenance document kept (1 MiB; PyPI's are a few kB): larger ones are
refused as they arrive."""

PROVENANCE_MEDIA_TYPE: Final = "application/vnd.pypi.integrity.v1+json"
"""The content type a provenance document is served with (Warehouse's)."""

PROVENANCE_SUFFIX: Final = ".provenance"
"""What the copy's name adds to the file's (see :func:`mirror.layout.provenance_path`)."""


def check_provenance(body: bytes, *, filename: str, sha256: str, verify_subjects: bool) -> None:
    """Raise ProvenanceError unless ``body`` is a provenance document the mirror keeps
    for ``filename`` (see the module docstring); ``verify_subjects`` checks that each
    attestation's statement has a subject whose sha256 digest is ``sha256``."""
    if len(body) > MAX_PROVENANCE_BYTES:
        raise ProvenanceError(
            f"{filename}: provenance of {len(body)} bytes, more than {MAX_PROVENANCE_BYTES}"
        )
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProvenanceError(f"{filename}: provenance is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ProvenanceError(f"{filename}: provenance is not a JSON object")
    if verify_subjects:
        digests = subject_digests(document, filename=filename)
        for where, found in digests:
            if sha256 not in found:
                raise ProvenanceError(
                    f"{filename}: provenance {where} attests {', '.join(sorted(found)) or 'no'}"
                    f" sha256, not the file's {sha256}"
                )


def subject_digests(document: dict[str, object], *, filename: str) -> list[tuple[str, set[str]]]:
    """Each attestation of ``document`` (where it is, as a key path) with the sha256
    digests its statement's subjects name. Raises ProvenanceError when the document
    has no attestation or one is not shaped as PEP 740 says."""
    found: list[tuple[str, set[str]]] = []
    bundles = document.get("attestation_bundles")
    if not isinstance(bundles, list):
        raise ProvenanceError(f"{filename}: provenance has no attestation_bundles list")
    for b, bundle in enumerate(bundles):
        attestations = bundle.get("attestations") if isinstance(bundle, dict) else None
        if not isinstance(attestations, list):
            raise ProvenanceError(f"{filename}: attestation_bundles[{b}].attestations: no list")
        for a, attestation in enumerate(attestations):
            where = f"attestation_bundles[{b}].attestations[{a}]"
            found.append((where, _statement_digests(attestation, where, filename)))
    if not found:
        raise ProvenanceError(f"{filename}: provenance has no attestation")
    return found


def _statement_digests(attestation: object, where: str, filename: str) -> set[str]:
    """The sha256 digests of the subjects of ``attestation``'s in-toto statement."""
    envelope = attestation.get("envelope") if isinstance(attestation, dict) else None
    encoded = envelope.get("statement") if isinstance(envelope, dict) else None
    if not isinstance(encoded, str):
        raise ProvenanceError(f"{filename}: {where}.envelope.statement: missing")
    try:
        statement = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ProvenanceError(
            f"{filename}: {where}.envelope.statement: not base64 JSON: {exc}"
        ) from exc
    subjects = statement.get("subject") if isinstance(statement, dict) else None
    if not isinstance(subjects, list):
        raise ProvenanceError(f"{filename}: {where}.envelope.statement: no subject list")
    digests: set[str] = set()
    for subject in subjects:
        digest = subject.get("digest") if isinstance(subject, dict) else None
        value = digest.get("sha256") if isinstance(digest, dict) else None
        if isinstance(value, str):
            digests.add(value.lower())
    return digests
