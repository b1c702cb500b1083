"""Schema only through Alembic: upgrade -> downgrade -> upgrade works, and no drift."""

from alembic import command
from sqlalchemy import inspect

from db.engine import alembic_config, downgrade, is_current, make_engine, upgrade

TABLES = {"accounts", "patients", "scores", "flag_notes", "audit_events", "settings"}


def test_upgrade_downgrade_upgrade_and_no_drift(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert is_current(engine)
    downgrade(engine, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    # `alembic check` raises when the models and the migrations disagree.
    command.check(alembic_config(engine))
    engine.dispose()


def test_the_schema_head_the_commands_compare_with_is_alembics_own(db_url: str) -> None:
    from alembic.script import ScriptDirectory

    from db.engine import SCHEMA_HEAD

    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [SCHEMA_HEAD], "a new migration: set db.engine.SCHEMA_HEAD to its revision"
    engine = make_engine(db_url)
    assert not is_current(engine)  # an empty database: no alembic_version table
    upgrade(engine)
    assert is_current(engine)
    previous = script.get_revision(SCHEMA_HEAD).down_revision
    downgrade(engine, str(previous))
    assert not is_current(engine)  # one migration behind
    upgrade(engine)
    assert is_current(engine)
    engine.dispose()


def test_every_write_path_moves_the_data_version(engine) -> None:  # type: ignore[no-untyped-def]
    from db.access import SYSTEM
    from db.engine import session_factory, transaction
    from db.queries import data_version
    from db.writes import assign_patient
    from tests.db.helpers import build_clinic

    def version() -> tuple[int, ...]:
        with session_factory(engine)() as session:
            return data_version(session)

    start = version()
    build_clinic(engine)  # ORM accounts + bulk inserts of patients and scores
    after_import = version()
    assert after_import > start
    with transaction(engine) as session:
        assign_patient(session, actor=SYSTEM, code="PA1", therapist="ther.b")
    assert version() > after_import
    moved = version()
    with session_factory(engine)() as session:  # reads do not move it
        data_version(session)
    assert version() == moved


def test_a_bulk_import_for_known_patients_moves_the_data_version(engine) -> None:  # type: ignore[no-untyped-def]
    """The fast path (COPY / executemany) goes around the ORM events and bumps it itself."""
    from db.access import SYSTEM
    from db.engine import session_factory, transaction
    from db.queries import data_version
    from db.writes import apply_import, plan_import
    from tests.db.helpers import build_clinic, scores_frame

    build_clinic(engine)
    with session_factory(engine)() as session:
        before = data_version(session)
    with transaction(engine) as session:  # patients and therapist exist: only scores are written
        apply_import(session, actor=SYSTEM, plan=plan_import(session, actor=SYSTEM, scores=scores_frame(
            [("PA1", "ther.a", 4, "WAI-SR", 44)])))
    with session_factory(engine)() as session:
        assert data_version(session) > before


def test_alembic_writes_to_the_stdout_of_the_moment_not_of_its_first_import() -> None:
    # Alembic is imported when first needed (not by every command); its Config's default stdout is
    # sys.stdout as it was at that import, which in the suite was a CLI runner's stream, closed
    # later ("I/O operation on closed file" in `alembic check`). In a fresh interpreter:
    import subprocess
    import sys

    from db.engine import PROJECT_DIR

    script = (
        "import io, sys\n"
        "real, sys.stdout = sys.stdout, io.StringIO()\n"
        "from db.engine import alembic_config\n"
        "alembic_config()\n"  # the first import of alembic.config, under the temporary stream
        "sys.stdout.close(); sys.stdout = real\n"
        "alembic_config().print_stdout('written')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_DIR, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "written"
