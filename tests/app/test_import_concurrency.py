"""Issue 18: four simultaneous uploads of the same file through the app's import function.

Before, the page planned and wrote in one plain transaction: every upload planned the rows as
new, one committed and the other three raised an uncaught ``IntegrityError``. Now
``ui.dataio.run_upload`` goes through ``db.writes.import_retrying`` like the command line. A
barrier after planning makes all four plan before any of them writes, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select

import db.writes as writes
import ui.dataio as dataio
from core.validation import read_scores_csv, validate_scores
from db.access import SYSTEM
from db.engine import session_factory, transaction
from db.models import Score
from tests.db.helpers import build_clinic

UPLOADS = 4
FILE = (b"patient_id,therapist_id,week,instrument,score\nPN1,ther.a,1,WAI-SR,40\nPN1,ther.a,2,WAI-SR,41\n"
        b"PN2,ther.b,1,SPIN,20\n")


def _all_plan_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every thread's first plan waits until all have planned: the lost-race case, every time."""
    barrier = threading.Barrier(UPLOADS, timeout=20)
    planned = threading.local()
    real = writes.plan_import

    def plan_then_wait(*args, **kwargs):  # type: ignore[no-untyped-def]
        plan = real(*args, **kwargs)
        if not getattr(planned, "once", False):
            planned.once = True
            # a backend that serialised the plans would break the barrier: then there is no race to force
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        return plan

    monkeypatch.setattr(writes, "plan_import", plan_then_wait)


def _at_once(call: Callable[[], object]) -> list[object]:
    results: list[object] = [None] * UPLOADS

    def run(k: int) -> None:
        try:
            results[k] = call()
        except Exception as exc:  # the test reports what escaped
            results[k] = exc

    threads = [threading.Thread(target=run, args=(k,)) for k in range(UPLOADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _stored(engine: Engine) -> int:
    with session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(Score)) or 0


def test_the_race_is_real_without_retrying(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old page's way (plan and apply in one transaction, no retry) loses the race."""
    actors = build_clinic(engine)
    _all_plan_first(monkeypatch)
    scores = validate_scores(read_scores_csv(FILE)).scores

    def old_way() -> dict[str, int]:
        with transaction(engine) as session:
            plan = writes.plan_import(session, actor=SYSTEM, scores=scores)
            return writes.apply_import(session, actor=actors["admin"], plan=plan, filename="same.csv")

    results = _at_once(old_way)
    assert any(isinstance(r, Exception) for r in results), results


def test_simultaneous_web_uploads_all_succeed(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    actors = build_clinic(engine)
    before = _stored(engine)
    monkeypatch.setattr(dataio, "get_engine", lambda: engine)
    _all_plan_first(monkeypatch)
    results = _at_once(lambda: dataio.run_upload(actors["admin"], "same.csv", FILE, replace=False))
    assert all(isinstance(r, tuple) for r in results), results  # nothing escaped
    messages = sorted(message for ok, message in results)  # type: ignore[misc]
    assert all(ok for ok, _ in results), messages  # type: ignore[misc]
    assert messages == (["Imported same.csv: 0 new, 3 unchanged, 0 replaced."] * (UPLOADS - 1)
                        + ["Imported same.csv: 3 new, 0 unchanged, 0 replaced."])
    assert _stored(engine) == before + 3


def test_simultaneous_conflicting_uploads_are_refused_with_a_sentence(engine: Engine,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    actors = build_clinic(engine)
    monkeypatch.setattr(dataio, "get_engine", lambda: engine)
    _all_plan_first(monkeypatch)
    files = [FILE.replace(b",40\n", f",{40 + k}\n".encode()) for k in range(UPLOADS)]
    counter = iter(range(UPLOADS))
    lock = threading.Lock()

    def upload() -> tuple[bool, str]:
        with lock:
            k = next(counter)
        return dataio.run_upload(actors["admin"], f"f{k}.csv", files[k], replace=False)

    results = _at_once(upload)
    assert all(isinstance(r, tuple) for r in results), results
    oks = [r for r in results if r[0]]  # type: ignore[index]
    refusals = [r[1] for r in results if not r[0]]  # type: ignore[index]
    assert len(oks) == 1 and len(refusals) == UPLOADS - 1, results
    assert all(m.startswith("1 row conflicts with stored scores; nothing was written.") for m in refusals), refusals
