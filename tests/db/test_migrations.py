"""Schema only through Alembic: upgrade -> downgrade -> upgrade works, and no drift."""

from alembic import command
from sqlalchemy import inspect

from db.engine import alembic_config, downgrade, is_current, make_engine, upgrade

TABLES = {"accounts", "patients", "scores", "flag_notes", "audit_events", "settings"}


def test_upgrade_downgrade_upgrade_and_no_drift(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    assert is_current(engine)
    downgrade(engine, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    # `alembic check` raises when the models and the migrations disagree.
    command.check(alembic_config(engine))
    engine.dispose()
