"""The loader cache (ui/cache.py): one entry per loader and arguments at the latest data version,
bounded in bytes, computed once however many sessions ask, and never changed by a page."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ui import cache


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import ui.session

    monkeypatch.setattr(ui.session, "get_engine", lambda: SimpleNamespace(url="sqlite:///clinic.db"))
    cache.clear()
    yield
    cache.clear()


def frame(rows: int, value: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"score": np.full(rows, value), "code": [f"P{n:05d}" for n in range(rows)]})


def test_a_new_data_version_replaces_the_old_entry_instead_of_adding_one() -> None:
    calls: list[int] = []

    @cache.cached()
    def load(actor: str, version: tuple[int, ...]) -> pd.DataFrame:
        calls.append(version[0])
        return frame(1000, version[0])

    for v in range(1, 11):  # ten data revisions
        assert load("admin", (v,))["score"].iloc[0] == v
        assert load("admin", (v,))["score"].iloc[0] == v  # a rerun: a hit
    assert calls == list(range(1, 11))
    entries, held = cache.stats()
    assert entries == 1 and held == cache.size_of(frame(1000))
    load("anna", (10,))
    assert cache.stats()[0] == 2  # one per actor


def test_the_cache_holds_at_most_its_bytes_least_recently_used_first(monkeypatch: pytest.MonkeyPatch) -> None:
    one = cache.size_of(frame(10_000))
    monkeypatch.setenv(cache.CACHE_ENV, str(2.5 * one / 1e6))

    @cache.cached()
    def load(code: str, version: tuple[int, ...]) -> pd.DataFrame:
        return frame(10_000)

    load("a", (1,))
    load("b", (1,))
    load("a", (1,))  # a is now the most recently used
    load("c", (1,))
    entries, held = cache.stats()
    assert entries == 2 and held <= 2.5 * one
    assert cache._lookup(("tests.app.test_cache", load.__qualname__, "sqlite:///clinic.db", (("code", "b"),)),
                         (1,)) == (False, None)  # b went, a stayed


def test_a_page_changing_its_copy_leaves_the_cached_frame_alone() -> None:
    @cache.cached()
    def load(version: tuple[int, ...]) -> tuple[pd.DataFrame, list[str]]:
        return frame(3), ["North"]

    shown, teams = load((1,))
    shown["score"] = 99.0
    shown.loc[0, "code"] = "changed"
    teams.append("South")
    again, teams_again = load((1,))
    assert again["score"].tolist() == [0.0, 0.0, 0.0] and again.loc[0, "code"] == "P00000"
    assert teams_again == ["North"]


def test_sessions_asking_together_compute_once() -> None:
    calls: list[int] = []

    @cache.cached()
    def load(version: tuple[int, ...]) -> pd.DataFrame:
        calls.append(1)
        time.sleep(0.3)
        return frame(10)

    results: list[pd.DataFrame] = []
    threads = [threading.Thread(target=lambda: results.append(load((7,)))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 5 and all(len(r) == 10 for r in results)


def test_a_loader_without_version_is_refused_and_a_bad_limit_is_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match="must"):
        cache.cached()(lambda actor: actor)
    monkeypatch.setenv(cache.CACHE_ENV, "lots")
    with pytest.raises(ValueError, match="set it to a number of megabytes"):
        cache.limit_bytes()


def test_the_server_hands_freed_memory_back_on_glibc() -> None:
    import platform

    from ui import cache

    tuned = cache.tune_allocator()
    assert tuned == (platform.libc_ver()[0] == "glibc")  # on glibc (CI's Debian) it applies
    cache.give_back()  # harmless anywhere
    # a large block freed is unmapped: the process's resident memory falls back
    def rss_mb() -> float:
        from pathlib import Path

        lines = Path("/proc/self/status").read_text().splitlines()
        status = dict(line.split(":", 1) for line in lines if ":" in line)
        return int(status["VmRSS"].split()[0]) / 1024

    if tuned:
        import numpy as np

        before = rss_mb()
        blocks = [np.ones(1_000_000) for _ in range(50)]  # 400 MB in 8 MB blocks
        assert rss_mb() > before + 300
        del blocks
        cache.give_back()
        assert rss_mb() < before + 50
        # Arrow's columns (pandas' text, the columnar reads) come from the same glibc: freed, they
        # go back too, where Arrow's own mimalloc pool kept them
        import pyarrow as pa
        import pyarrow.compute as pc

        assert pa.default_memory_pool().backend_name == "system"
        before = rss_mb()
        texts = pc.binary_repeat(pa.array(["P00001-therapist"] * 2_000_000), 10)  # ~320 MB of text
        assert rss_mb() > before + 250
        del texts
        cache.give_back()
        assert rss_mb() < before + 50
