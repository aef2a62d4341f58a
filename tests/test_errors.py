"""The error tree: one table of exit codes, one of HTTP statuses, and a docstring that matches both."""

from __future__ import annotations

import inspect
import re

import pytest

from hbw_sync import errors
from hbw_sync.errors import (
    AccessError,
    ConfigError,
    HbwError,
    IntegrityError,
    LimitError,
    ProtocolError,
    RevokedError,
    StorageError,
    StoreError,
    TransientError,
    UsageError,
    VersionError,
    WrongKeyError,
    exit_code_for,
    from_dict,
    http_status_for,
)

EXPECTED = {
    # class: (exit code, HTTP status, default code)
    HbwError: (1, 500, "error"),
    UsageError: (2, 400, "usage"),
    ConfigError: (78, 500, "config"),
    StoreError: (74, 500, "store"),
    StorageError: (74, 503, "store.io"),
    ProtocolError: (65, 400, "protocol"),
    LimitError: (65, 413, "protocol.limit"),
    VersionError: (76, 426, "protocol.version"),
    IntegrityError: (65, 400, "integrity"),
    AccessError: (77, 403, "access"),
    WrongKeyError: (77, 403, "access.wrong_key"),
    RevokedError: (77, 403, "access.revoked"),
    TransientError: (75, 503, "transient"),
}


def _defined_error_classes() -> list[type[HbwError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, HbwError) and cls.__module__ == errors.__name__
    ]


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_exit_code_and_http_status(cls):
    exit_code, status, code = EXPECTED[cls]
    e = cls("boom")
    assert exit_code_for(e) == exit_code
    assert http_status_for(e) == status
    assert e.code == code


def test_expected_table_covers_the_module():
    assert set(EXPECTED) == set(_defined_error_classes())


def test_lookup_follows_the_mro_for_subclasses_defined_elsewhere():
    class DiskFull(StoreError):
        pass

    class TooBig(LimitError):
        pass

    class Odd(HbwError):
        pass

    class DoubleTrouble(TransientError, UsageError):
        pass

    assert exit_code_for(DiskFull("x")) == 74 and http_status_for(DiskFull("x")) == 500
    assert exit_code_for(TooBig("x")) == 65 and http_status_for(TooBig("x")) == 413
    assert exit_code_for(Odd("x")) == 1 and http_status_for(Odd("x")) == 500
    # most specific first: the first base in the MRO wins
    assert exit_code_for(DoubleTrouble("x")) == 75 and http_status_for(DoubleTrouble("x")) == 503


@pytest.mark.parametrize("exc", [ValueError("x"), KeyError("k"), RuntimeError(), KeyboardInterrupt(), OSError(28, "disk full")])
def test_non_hbw_exceptions_map_to_the_generic_codes(exc):
    assert exit_code_for(exc) == 1
    assert http_status_for(exc) == 500


def test_code_override_and_hint():
    e = ProtocolError("bad bytes", code="protocol.truncated", hint="send it again")
    assert e.code == "protocol.truncated"
    assert ProtocolError.code == "protocol"  # the override is per instance
    assert ProtocolError("x").code == "protocol"
    assert e.message == "bad bytes" and e.hint == "send it again"
    assert str(e) == "bad bytes (send it again)"
    assert str(ProtocolError("plain")) == "plain"
    assert e.args == ("bad bytes",)
    assert isinstance(e, Exception)


def test_to_dict():
    assert WrongKeyError("no key", hint="sync").to_dict() == {
        "error": "WrongKeyError", "code": "access.wrong_key", "message": "no key", "hint": "sync"}
    assert UsageError("bad").to_dict() == {"error": "UsageError", "code": "usage", "message": "bad"}


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
@pytest.mark.parametrize("code", [None, "custom.code"])
@pytest.mark.parametrize("hint", [None, "try again"])
def test_to_dict_from_dict_round_trip(cls, code, hint):
    e = cls("something went wrong ✗", code=code, hint=hint)
    back = from_dict(e.to_dict())
    assert type(back) is cls
    assert (back.code, back.message, back.hint) == (e.code, e.message, e.hint)
    assert back.to_dict() == e.to_dict()
    assert exit_code_for(back) == exit_code_for(e) and http_status_for(back) == http_status_for(e)


def test_from_dict_unknown_and_partial():
    e = from_dict({"error": "SomethingNew", "code": "future.thing", "message": "hm"})
    assert type(e) is HbwError and e.code == "future.thing" and e.message == "hm"
    e = from_dict({})
    assert type(e) is HbwError and e.code == "error" and e.message == "unknown error" and e.hint is None
    e = from_dict({"error": "ValueError", "message": "not ours"})  # only HbwError classes are rebuilt
    assert type(e) is HbwError
    e = from_dict({"error": "LimitError"})
    assert type(e) is LimitError and e.code == "protocol.limit"


def test_every_error_class_is_in_both_tables():
    classes = _defined_error_classes()
    assert len(classes) >= 12
    missing_exit = [c.__name__ for c in classes if c not in errors.EXIT_CODES]
    missing_http = [c.__name__ for c in classes if c not in errors.HTTP_STATUSES]
    assert not missing_exit, f"add to EXIT_CODES: {missing_exit}"
    assert not missing_http, f"add to HTTP_STATUSES: {missing_http}"
    assert set(errors.EXIT_CODES) == set(errors.HTTP_STATUSES) == set(classes)


def test_every_error_class_has_its_own_code():
    codes = {c.__name__: c.code for c in _defined_error_classes()}
    assert len(set(codes.values())) == len(codes), codes


_TREE_LINE = re.compile(r"^(?P<indent>[\s│├└─]*?)(?P<name>[A-Z]\w*Error)\s+exit\s+(?P<exit>\d+)\s+HTTP\s+(?P<http>\d+)\s")


def _docstring_tree() -> dict[str, tuple[int, int, int]]:
    """{class name: (depth, exit, http)} as drawn in the module docstring."""
    drawn = {}
    for line in (errors.__doc__ or "").splitlines():
        m = _TREE_LINE.match(line[4:] if line.startswith("    ") else line)
        if m:
            depth = len(m.group("indent")) // 4
            drawn[m.group("name")] = (depth, int(m.group("exit")), int(m.group("http")))
    return drawn


def test_every_error_class_is_drawn_in_the_docstring_tree():
    drawn = _docstring_tree()
    classes = _defined_error_classes()
    assert {c.__name__ for c in classes} == set(drawn), "the docstring tree and the classes differ"
    for cls in classes:
        depth, exit_code, status = drawn[cls.__name__]
        assert exit_code == errors.EXIT_CODES[cls], cls.__name__
        assert status == errors.HTTP_STATUSES[cls], cls.__name__
        # the drawing's depth is the class's depth under HbwError
        assert depth == cls.__mro__.index(HbwError), cls.__name__


def test_docstring_tree_parents_match_the_bases():
    lines = [line[4:] for line in (errors.__doc__ or "").splitlines() if _TREE_LINE.match(line[4:] if line.startswith("    ") else line)]
    stack: list[str] = []
    for line in lines:
        m = _TREE_LINE.match(line)
        assert m
        depth = len(m.group("indent")) // 4
        stack[depth:] = [m.group("name")]
        if depth:
            cls = getattr(errors, m.group("name"))
            assert cls.__bases__[0].__name__ == stack[depth - 1], line
