"""Docker image references, validated against the grammar of distribution/reference.

An image name reaches `docker run` as one argument: anything outside the grammar (a leading
``-``, spaces, ``$(...)``, upper case in the repository) is rejected before it gets there.
"""

from __future__ import annotations

import re

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)

NAME_MAX = 255
# Hex lengths of the digest algorithms Docker registers; others only need 32+ hex digits.
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}

EXPECTED = "[registry[:port]/]name[:tag][@digest], name in lower case"


def image_ref_problem(ref: str) -> str | None:
    """Why ``ref`` is not a valid image reference, or None when it is."""
    if not ref:
        return "empty"
    match = _REFERENCE.fullmatch(ref)
    if match is None:
        return "not of the form " + EXPECTED
    if len(match["name"]) > NAME_MAX:
        return f"name longer than {NAME_MAX} characters"
    if match["digest"]:
        algorithm, _, hex_part = match["digest"].partition(":")
        want = _DIGEST_HEX.get(algorithm)
        if want is not None and len(hex_part) != want:
            return f"{algorithm} digest needs {want} hex digits, got {len(hex_part)}"
    return None


def is_image_ref(ref: str) -> bool:
    return image_ref_problem(ref) is None


def image_ref_error(ref: str) -> str | None:
    """``invalid image reference 'ref' (why)``, or None when ``ref`` is valid."""
    problem = image_ref_problem(ref)
    return None if problem is None else f"invalid image reference {ref!r} ({problem})"


def invalid_image_message(field: str, ref: str) -> str | None:
    """``field: invalid image reference 'ref' (why)``, or None when ``ref`` is valid."""
    error = image_ref_error(ref)
    return None if error is None else f"{field}: {error}"
