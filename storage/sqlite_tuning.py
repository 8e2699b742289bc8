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
no connection is open anywhere in the process. So it is tried once, when the tracker makes its
first SQLite engine (the CLI and the scheduler do that on the main thread before anything
else), and only while no other thread runs and SQLite's own count says that no memory is in use
(statistics on and nothing open). Anything unexpected (another platform, a library ctypes cannot
reach, a different SQLite from the one `sqlite3` uses, connections already open, other threads)
leaves SQLite as it is for the life of the process: the tracker is then as correct, only slower
on parallel summaries.
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
"""None: not tried yet; True: statistics are off; False: they stay on (not tried again)."""


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
    """Turn SQLite's memory statistics off, the first time only, if it is safe then; True when
    they are off. Later calls return what the first one found."""
    global _state
    if _state is not None:
        return _state
    with _lock:
        if _state is None:
            _state = _turn_off()
            log.debug("SQLite memory statistics %s", "off" if _state else "left on")
        return _state


def _turn_off() -> bool:
    if threading.active_count() != 1:  # another thread might be opening a connection right now
        return False
    lib = _library()
    if lib is None:
        return False
    if lib.sqlite3_memory_used() != 0:  # counting, and something is open
        return False
    if _memory_with_a_connection(lib) == 0:  # not counting: built so (or turned off already)
        return True
    if lib.sqlite3_memory_used() != 0 or lib.sqlite3_shutdown() != 0:
        return False
    configured = lib.sqlite3_config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0))
    if lib.sqlite3_initialize() != 0:  # pragma: no cover - sqlite3 initialises again on the next open
        log.warning("SQLite did not initialise again after turning its memory statistics off")
    return configured == 0 and _memory_with_a_connection(lib) == 0
