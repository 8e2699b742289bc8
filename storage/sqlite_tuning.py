"""Process-wide SQLite set-up: memory statistics off, so that threads do not queue on one mutex.

Unless SQLite was built with SQLITE_DEFAULT_MEMSTATUS=0, it counts every allocation under one
process-wide mutex. Builds that also leave out the lookaside allocator (Debian's, for one)
allocate several times per row of a query, so two connections queried from two threads of one
process wait on each other: the summaries' slices (`tracker.summary.in_slices`) took as long on
two threads as on one, each thread ~2.5x slower than alone. SQLite's documentation recommends
turning the statistics off (https://sqlite.org/compile.html#default_memstatus). Nothing in the
tracker reads them; Python's `sqlite3` does not either.

They can only be turned off while SQLite is not initialised: `sqlite3_shutdown()`,
`sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0)`, `sqlite3_initialize()`, which is safe only while
no connection is open anywhere in the process. So this runs before the tracker opens its first
SQLite connection, and only when SQLite's own count says that no memory is in use (statistics
on and nothing open). Anything unexpected (another platform, a library ctypes cannot reach, a
different SQLite from the one `sqlite3` uses, connections already open) leaves SQLite as it is:
the tracker is then as correct, only slower on parallel summaries.
"""

from __future__ import annotations

import ctypes
import logging
import sqlite3
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

_SQLITE_CONFIG_MEMSTATUS = 9
_lock = threading.Lock()
_state: bool | None = None
"""None: not settled yet (try again at the next connection); True: statistics are off; False:
they stay on (this process cannot change them)."""


def _library() -> Any | None:
    """The SQLite library that Python's `sqlite3` runs on, through ctypes (None: unreachable)."""
    if sys.platform != "linux":  # sqlite3_config is variadic: ctypes calls it right on Linux ABIs
        return None
    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)  # dlsym searches the module and the library it links
        lib.sqlite3_libversion_number.restype = ctypes.c_int
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        for name in ("sqlite3_config", "sqlite3_shutdown", "sqlite3_initialize"):
            getattr(lib, name).restype = ctypes.c_int
    except (ImportError, OSError, AttributeError):
        return None
    major, minor, patch = sqlite3.sqlite_version_info
    if lib.sqlite3_libversion_number() != major * 1_000_000 + minor * 1_000 + patch:
        return None
    return lib


def _memory_with_a_connection(lib: Any) -> int:
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("SELECT 1").fetchall()
        return int(lib.sqlite3_memory_used())
    finally:
        probe.close()


def memory_statistics_off() -> bool:
    """Turn SQLite's memory statistics off if it is safe now; True when they are off.

    Cheap after the first call that settles it."""
    global _state
    if _state is not None:
        return _state
    with _lock:
        if _state is not None:
            return _state
        lib = _library()
        if lib is None:
            _state = False
            return _state
        if lib.sqlite3_memory_used() != 0:  # counting, and something is open: not now
            return False
        if _memory_with_a_connection(lib) == 0:  # not counting (built so, or done already)
            _state = True
            return _state
        if lib.sqlite3_memory_used() != 0:
            return False
        if lib.sqlite3_shutdown() != 0:
            _state = False
            return _state
        configured = lib.sqlite3_config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0))
        if lib.sqlite3_initialize() != 0:  # pragma: no cover - nothing to recover; sqlite3 re-initialises on open
            log.warning("SQLite did not initialise again after turning its memory statistics off")
        _state = configured == 0 and _memory_with_a_connection(lib) == 0
        log.debug("SQLite memory statistics %s", "off" if _state else "left on")
        return _state
