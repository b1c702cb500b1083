"""The pages' loader cache: one entry per loader and arguments, the latest data version only,
bounded in bytes (issue 19).

``st.cache_data`` kept up to 64 pickled results per loader, one per data version: every write
made a new version, so an admin's whole-clinic frames piled up (70 MB -> 1.1 GB after three
one-row changes), and every warm hit unpickled a copy (1.5-2.2 s of a warm admin page). Here:

* the key is the loader, the database and the arguments *without* ``version``; a result of an
  older data version is replaced, not kept beside the new one, so writes never grow the cache;
* the whole cache holds at most ``ALLIANCE_CACHE_MB`` (default 256) megabytes, measured with
  ``DataFrame.memory_usage(deep=True)``; the least recently used entries go first;
* a hit returns the stored object itself, shallow-copied where it is a pandas object (pandas'
  copy-on-write: a page that adds a column or sets a cell changes its copy, never the cached
  frame) and as a new list or tuple otherwise; nothing is pickled;
* one session computes a missing entry while others asking for the same key wait for it
  (ten clinicians opening the caseload after an import compute it once).

Each loader still takes the acting user (:class:`db.access.Actor`) as an argument, so a result
is only ever returned to the user it was computed for. :func:`clear` empties it (tests, and
after a restore).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import inspect
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import pandas as pd
import streamlit as st

P = ParamSpec("P")
R = TypeVar("R")

CACHE_ENV = "ALLIANCE_CACHE_MB"

_lock = threading.Lock()
_entries: OrderedDict[tuple, tuple[Any, Any, int]] = OrderedDict()  # key -> (version, value, bytes)
_computing: dict[tuple, threading.Lock] = {}
_total = 0


#: glibc's ``mallopt`` parameter number of the mmap threshold (malloc.h, ``M_MMAP_THRESHOLD``).
_M_MMAP_THRESHOLD = -3
#: Allocations of this size and more get their own mapping, returned to the system when freed.
MMAP_THRESHOLD = 64 * 1024
#: After storing an entry at least this large, free memory is handed back (``malloc_trim``).
TRIM_AFTER_BYTES = 8 * 1024 * 1024


@functools.lru_cache(maxsize=1)
def _glibc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_allocator() -> bool:
    """Keep the server's memory to what it holds (issue 19); True where it applies (glibc).

    glibc serves a large allocation (a column of a whole-clinic read) from its own mapping, but
    after the first such block is freed it raises that threshold to the block's size (up to
    32 MB), so later columns come from the heap, which it seldom returns: the server kept
    ~120 MB more after an admin's caseload than it held (bench/pages.py). A fixed threshold keeps
    every large block a mapping of its own, unmapped when freed; Arrow (pandas' text columns, the
    columnar reads) is switched from its mimalloc pool, which keeps what it frees, to the same
    glibc. Called once by the app server
    (app.py); commands that run and exit do not need it.
    """
    import pyarrow as pa

    libc = _glibc()
    if libc is None:
        return False
    # Arrow's own pool (mimalloc) kept ~100 MB of freed string columns in the server after an
    # admin's pages, whatever glibc handed back (bench/pages.py); Arrow allocates from glibc instead.
    pa.set_memory_pool(pa.system_memory_pool())
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def give_back() -> None:
    """Hand the allocator's free memory back to the system (glibc's ``malloc_trim``; no-op elsewhere)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def limit_bytes() -> int:
    """``$ALLIANCE_CACHE_MB`` (default 256) in bytes."""
    raw = os.environ.get(CACHE_ENV, "256")
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"{CACHE_ENV} is {raw!r}; set it to a number of megabytes, e.g. 256.") from None
    return int(max(mb, 0.0) * 1e6)


def size_of(value: Any) -> int:
    """Bytes ``value`` holds: pandas objects measured deeply, containers summed, a plotly figure by
    its JSON, others 1 KB."""
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(deep=True, index=True).sum())
    if isinstance(value, (pd.Series, pd.Index)):
        return int(value.memory_usage(deep=True))
    if isinstance(value, (list, tuple)):
        return 64 + sum(size_of(v) for v in value)
    if isinstance(value, (bytes, str)):
        return len(value)
    if type(value).__module__.startswith("plotly."):  # a figure: what it sends to the browser
        return len(value.to_json())
    return 1024


def _shallow(value: Any) -> Any:
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return value.copy(deep=False)
    if isinstance(value, tuple):
        return tuple(_shallow(v) for v in value)
    if isinstance(value, list):
        return [_shallow(v) for v in value]
    return value


def _store(key: tuple, version: Any, value: Any) -> None:
    global _total
    nbytes = size_of(value)
    with _lock:
        old = _entries.pop(key, None)
        if old is not None:
            _total -= old[2]
        _entries[key] = (version, value, nbytes)
        _total += nbytes
        limit = limit_bytes()
        while _total > limit and len(_entries) > 1:  # the newest entry stays, however large
            _, (_, _, freed) = _entries.popitem(last=False)
            _total -= freed
    if nbytes >= TRIM_AFTER_BYTES or (old is not None and old[2] >= TRIM_AFTER_BYTES):
        del old
        give_back()  # what computing it took (a whole-clinic read) and the entry it replaced


def _lookup(key: tuple, version: Any) -> tuple[bool, Any]:
    with _lock:
        hit = _entries.get(key)
        if hit is None or hit[0] != version:
            return False, None
        _entries.move_to_end(key)
        return True, hit[1]


def cached(spinner: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a loader whose arguments include ``version`` (``db.queries.data_version``)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        if "version" not in signature.parameters:
            raise TypeError(f"{fn.__qualname__} takes no 'version' argument; a cached loader must.")

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            from ui.session import get_engine

            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            version = arguments.pop("version")
            key = (fn.__module__, fn.__qualname__, str(get_engine().url), tuple(sorted(arguments.items())))
            found, value = _lookup(key, version)
            if found:
                return _shallow(value)  # type: ignore[no-any-return]
            with _lock:
                computing = _computing.setdefault(key, threading.Lock())
            with computing:  # another session may be computing this very entry
                found, value = _lookup(key, version)
                if not found:
                    if spinner:
                        with st.spinner(spinner):
                            value = fn(*args, **kwargs)
                    else:
                        value = fn(*args, **kwargs)
                    _store(key, version, value)
            with _lock:
                _computing.pop(key, None)
            return _shallow(value)  # type: ignore[no-any-return]

        wrapper.cached_loader = True  # type: ignore[attr-defined]  # found by tests/app/test_security.py
        return wrapper

    return decorate


def clear() -> None:
    """Forget every entry."""
    global _total
    with _lock:
        _entries.clear()
        _computing.clear()
        _total = 0


def stats() -> tuple[int, int]:
    """``(entries, bytes)`` held now."""
    with _lock:
        return len(_entries), _total
