"""The ``Raises:`` sections the web app and tray code against (STYLE.md §9) say what really happens.

Every public method of Device and Replica that the app calls states what it raises; each
promise here is checked on a real store: the class and the stable ``code``, and that nothing
changed.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from hbw_sync.client import Device, Replica
from hbw_sync.client.vault import KdfParams
from hbw_sync.errors import ConfigError, UsageError, WrongKeyError
from hbw_sync.ops import Status

PASS = "orchid lantern 52 ferry"
#: What hbw_sync/client/app calls on a Device or a Replica.
APP_CALLS = {
    Device: ["open", "unlock", "status", "opens_with"],
    Replica: ["tasks", "task", "task_history", "add_task", "edit_task", "set_status", "assign", "note", "members",
              "member_names", "profile", "set_profile", "docs", "doc", "add_doc", "update_doc", "export_doc",
              "mark_confidential", "resolve", "change"],
}


@pytest.mark.parametrize("cls,name", [(c, n) for c, names in APP_CALLS.items() for n in names])
def test_what_the_app_calls_says_what_it_raises(cls: type, name: str) -> None:
    doc = inspect.getdoc(getattr(cls, name)) or ""
    assert doc, f"{cls.__name__}.{name} has no docstring"
    needs_raises = name not in ("tasks", "member_names", "docs", "opens_with")  # they only read, and raise nothing
    if needs_raises:
        assert "Raises" in doc or "raises nothing" in doc.lower(), f"{cls.__name__}.{name}: no Raises section"


@pytest.fixture
def rep(tmp_path: Path) -> Replica:
    r = Device.init(tmp_path / "h", "amina", PASS, kdf=KdfParams(n=2**10)).unlock(PASS)
    r.create_team("District Finance")
    return r


def _code(exc: pytest.ExceptionInfo[BaseException]) -> str:
    return getattr(exc.value, "code")


def test_device_open_and_unlock(tmp_path: Path, rep: Replica) -> None:
    with pytest.raises(ConfigError) as e:
        Device.open(tmp_path / "nothing-here")
    assert _code(e) == "config.no_store"
    with Device.open(rep.store.home) as dev, pytest.raises(WrongKeyError) as e:
        dev.unlock("not the passphrase at all")
    assert _code(e) == "access.wrong_key"


def test_task_methods_raise_usage_errors_and_change_nothing(rep: Replica, tmp_path: Path) -> None:
    t = rep.add_task("Reconcile invoices")
    before = rep.task(t.id)
    for call in (lambda: rep.task("zz"), lambda: rep.task("00ff00ff"), lambda: rep.edit_task(t.id),
                 lambda: rep.edit_task(t.id, title="  "), lambda: rep.assign(t.id, "Not A Name"),
                 lambda: rep.note(t.id, "   "), lambda: rep.add_task(""), lambda: rep.edit_task(t.id, priority=99),
                 lambda: rep.set_profile(capacity=-5)):
        with pytest.raises(UsageError):
            call()
    assert rep.task(t.id) == before and len(rep.tasks()) == 1
    rep.edit_task(t.id, deleted=True)
    with pytest.raises(UsageError) as e:
        rep.set_status(t.id, Status.DONE)
    assert _code(e) == "usage.deleted"


def test_document_methods_raise_usage_errors(rep: Replica, tmp_path: Path) -> None:
    f = tmp_path / "minutes.txt"
    f.write_text("the minutes of Monday's meeting\n" * 20)
    d = rep.add_doc(f)
    with pytest.raises(UsageError):
        rep.update_doc(d.id, f)  # the same bytes: nothing to record
    with pytest.raises(UsageError):
        rep.doc("ab" if not d.id.startswith("ab") else "cd")
    with pytest.raises(UsageError):
        rep.add_doc(tmp_path / "missing.txt")
    assert [x.id for x in rep.docs()] == [d.id]
