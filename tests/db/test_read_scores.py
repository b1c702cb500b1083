"""``db.queries.read_scores`` over the column-by-column path (``db.columnar``), on a clinic larger
than one id list (600 patients, so an admin's read takes the unfiltered path): every viewer gets
exactly the rows the access rule gives them, with the same frame whichever path read them."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from sqlalchemy import Engine, func, insert, select

from db import columnar
from db.access import SYSTEM, Actor
from db.engine import session_factory, transaction
from db.models import Account, Patient, Score, utcnow
from db.queries import read_scores

PATIENTS = 600  # more than one id list (columnar.CHUNK)
THERAPISTS = 3


@pytest.fixture
def clinic(engine: Engine) -> Engine:
    assert PATIENTS > columnar.CHUNK
    with transaction(engine) as session:
        session.execute(insert(Account), [
            {"name": f"ther.{i}", "role": "therapist", "team": "North" if i < 2 else "South", "active": True,
             "session_epoch": 0, "created_at": utcnow()} for i in range(THERAPISTS)]
            + [{"name": "sup.north", "role": "supervisor", "team": "North", "active": True, "session_epoch": 0,
                "created_at": utcnow()}])
        ids = dict(session.execute(select(Account.name, Account.id)).all())
        session.execute(insert(Patient), [
            {"code": f"P{n:05d}", "therapist_id": ids[f"ther.{n % THERAPISTS}"], "status": "active",
             "start_date": dt.date(2026, 9, 7), "planned_weeks": 12, "created_at": utcnow()}
            for n in range(PATIENTS)])
        pids = dict(session.execute(select(Patient.code, Patient.id)).all())
        rows = []
        for n in range(PATIENTS):
            for week in (1, 2, 3):
                rows.append({"patient_id": pids[f"P{n:05d}"], "instrument": "SPIN", "week": week,
                             "total": float(40 - week - n % 7), "source": "import", "entered_at": utcnow(),
                             "version": 1, "administered_on": dt.date(2026, 9, 7) + dt.timedelta(weeks=week - 1)
                             if n % 2 else None})
            rows.append({"patient_id": pids[f"P{n:05d}"], "instrument": "PHQ-9", "week": 1, "total": 9.0,
                         "items": json.loads("[1, 1, 1, 1, 1, 1, 1, 1, 1]") if n % 3 else None,
                         "source": "import", "entered_at": utcnow(), "version": 1})
        session.execute(insert(Score), rows)
    return engine


def _actor(session, name: str) -> Actor:  # type: ignore[no-untyped-def]
    account = session.scalar(select(Account).where(Account.name == name))
    return Actor(id=account.id, name=account.name, role=account.role, team=account.team)


def test_every_viewer_gets_exactly_their_rows_whichever_path_reads_them(clinic: Engine) -> None:
    with session_factory(clinic)() as session:
        everyone = read_scores(session, actor=SYSTEM, with_items=True)  # the unfiltered path
        assert len(everyone) == session.scalar(select(func.count()).select_from(Score)) == PATIENTS * 4
        parts = [read_scores(session, actor=_actor(session, f"ther.{i}"), with_items=True)  # id lists
                 for i in range(THERAPISTS)]
        for i, part in enumerate(parts):
            assert set(part["therapist_id"]) == {f"ther.{i}"} and part["patient_id"].nunique() == PATIENTS / 3
        joined = pd.concat(parts).sort_values(["patient_id", "instrument", "week"], ignore_index=True)
        pd.testing.assert_frame_equal(everyone, joined)
        north = read_scores(session, actor=_actor(session, "sup.north"))
        assert set(north["therapist_id"]) == {"ther.0", "ther.1"} and len(north) == len(parts[0]) + len(parts[1])
        assert read_scores(session, actor=None).empty
        # items, dates and filters arrive as stored
        phq = everyone[everyone["instrument"] == "PHQ-9"]
        assert phq.loc[phq["patient_id"] == "P00001", [f"item_{k}" for k in range(1, 10)]].to_numpy().tolist() \
            == [[1.0] * 9]
        assert phq.loc[phq["patient_id"] == "P00000", "item_1"].isna().all()
        spin = everyone[(everyone["instrument"] == "SPIN") & (everyone["patient_id"] == "P00001")]
        assert spin["administered_on"].tolist() == [dt.date(2026, 9, 7), dt.date(2026, 9, 14), dt.date(2026, 9, 21)]
        assert everyone.loc[everyone["patient_id"] == "P00000", "administered_on"].isna().all()
        some = read_scores(session, actor=SYSTEM, instruments=["SPIN"], as_of_week=2)
        expected = everyone[(everyone["instrument"] == "SPIN") & (everyone["week"] <= 2)]
        assert len(some) == len(expected) == PATIENTS * 2
        two = read_scores(session, actor=_actor(session, "ther.0"), patient_codes=["P00000", "P00001", "P00003"])
        assert set(two["patient_id"]) == {"P00000", "P00003"}  # P00001 is ther.1's


def test_an_instrument_filter_is_a_code_never_sql(clinic: Engine) -> None:
    with session_factory(clinic)() as session, pytest.raises(ValueError, match="is not an instrument code"):
        read_scores(session, actor=SYSTEM, instruments=["SPIN') OR 1=1 --"])


def test_reading_in_small_batches_gives_the_same_frame(clinic: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # the SQLite read transposes BATCH rows at a time; batches that split patients, instruments and
    # id lists anywhere must join into exactly the frame of one batch
    with session_factory(clinic)() as session:
        whole = read_scores(session, actor=SYSTEM, with_items=True)
        mine = read_scores(session, actor=_actor(session, "ther.1"), instruments=["SPIN"])
        monkeypatch.setattr(columnar, "BATCH", 7)
        pd.testing.assert_frame_equal(read_scores(session, actor=SYSTEM, with_items=True), whole)
        pd.testing.assert_frame_equal(read_scores(session, actor=_actor(session, "ther.1"), instruments=["SPIN"]),
                                      mine)
        assert len(mine) == PATIENTS  # 200 patients x 3 SPIN weeks
