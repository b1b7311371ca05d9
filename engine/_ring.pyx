# cython: language_level=3, boundscheck=False, wraparound=False
"""Binding of the C ring (csrc/ring.h): `Ring`, numpy views of slots, GIL-free waits."""

import atexit
import operator
import os

import numpy as np

cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from cpython.ref cimport Py_INCREF
from libc.errno cimport EBUSY, EINTR, EINVAL, ENOENT, EPIPE, ETIMEDOUT, EEXIST
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from engine._cring cimport *

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    object PyArray_NewFromDescr(object subtype, cnp.dtype descr, int nd, cnp.npy_intp *dims,
                                cnp.npy_intp *strides, void *data, int flags, object obj)

_KINDS = {"pool": FE_POOL, "ordered": FE_ORDERED}
_UINT8 = np.dtype(np.uint8)
_KIND_NAMES = {FE_PRODUCER: "producer", FE_POOL: "pool", FE_ORDERED: "ordered"}
_PRODUCER_HELD = ("another live process (or another handle) is the producer: a ring has one, "
                  "until it closes or dies")

# Names of the segments this process created and has not unlinked: removed at exit,
# whether the interpreter exits cleanly, on an exception or on Ctrl-C.
_created = {}


def _unlink_created():
    pid = os.getpid()
    for name, creator in list(_created.items()):
        if creator == pid:
            fe_unlink(name.encode())
        _created.pop(name, None)


atexit.register(_unlink_created)


# ---- errors --------------------------------------------------------------
# One hierarchy: RingError, and subclasses that are also the builtin they mean,
# so that callers can catch either.  `errno` is the C status as a positive errno
# (errno.ETIMEDOUT, ...), or for the ring's own codes the FE_* value (negative).


class RingError(Exception):
    """Base of every error of the ring."""
    _errno = None  # the errno of a class's errors where the raise gives none

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = type(self)._errno if errno is None else errno


class RingTimeout(RingError, TimeoutError):
    """A claim or take timed out."""
    _errno = ETIMEDOUT


class RingEOF(RingError, EOFError):
    """The producer ended the stream and this stage has handed out every item."""
    _errno = FE_EOF


class RingAborted(RingError, RuntimeError):
    """The ring was aborted: every wait on it fails from then on."""
    _errno = FE_ABORTED


class RingBusy(RingError, RuntimeError):
    """A role (the producer, an ordered stage's consumer) is held by another live
    process or another handle."""
    _errno = EBUSY


class RingEnded(RingError, RuntimeError):
    """The producer ended the stream already: nothing more can be claimed."""
    _errno = EPIPE


class RingNotHeld(RingError, ValueError):
    """A sequence that the caller does not hold (publish, done)."""
    _errno = FE_ENOTHELD


class RingClosed(RingError, ValueError):
    """The handle is closed."""
    _errno = FE_ECLOSED


class RingInvalid(RingError, ValueError):
    """An argument the ring refuses: a stage that does not exist, a size, a sequence
    not in the ring, a shape larger than a slot."""
    _errno = EINVAL


class RingNotARing(RingError, ValueError):
    """The segment is not a ring this build can map; `problem` names the check that
    failed (bad magic, layout version, geometry, size)."""

    def __init__(self, message, errno=None, problem=None):
        super().__init__(message, errno)
        self.problem = problem


class RingNotFound(RingError, FileNotFoundError):
    """No shared-memory segment of that name."""
    _errno = ENOENT


class RingExists(RingError, FileExistsError):
    """A segment of that name exists already."""
    _errno = EEXIST


class RingOSError(RingError, OSError):
    """Another error of the system (ENOMEM, ENOSPC: /dev/shm full, ...)."""


cdef object _errno_of(int rc):
    return rc if rc <= FE_EOF else -rc


cdef int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


# A wait sleeps at most this long before it looks at signals again: Ctrl-C normally
# interrupts the futex wait at once (EINTR), but one that lands in the spin before
# the sleep would otherwise go unseen until the wait ends.
cdef int64_t _SLICE_NS = 500_000_000


cdef int64_t _deadline(timeout) except? -2:
    """Absolute CLOCK_MONOTONIC deadline in ns for a timeout in seconds; -1 for None."""
    if timeout is None:
        return -1
    t = float(timeout)
    if not t >= 0:  # also refuses NaN
        raise RingInvalid(f"timeout must be None or >= 0 seconds, not {timeout!r}")
    return _now_ns() + <int64_t>(t * 1e9)


cdef inline int64_t _slice(int64_t deadline) noexcept nogil:
    """How long the next wait may sleep."""
    if deadline < 0:
        return _SLICE_NS
    cdef int64_t left = deadline - _now_ns()
    return 0 if left < 0 else (left if left < _SLICE_NS else _SLICE_NS)


cdef bint _again(fe_ring *r, int rc, int64_t deadline) except -1:
    """After a wait returned rc: run signal handlers (raising KeyboardInterrupt on
    Ctrl-C), and say whether to wait again (interrupted, or a slice ended early);
    the next wait then continues this one (no new stall, no second spin)."""
    if rc != -EINTR and rc != -ETIMEDOUT:
        return False
    PyErr_CheckSignals()
    if rc == -EINTR or deadline < 0 or _now_ns() < deadline:
        fe_resume_wait(r)
        return True
    return False


cdef int _check(int rc, str ring, str what) except -1:
    """Turn a C status into an exception that names the ring and the operation."""
    if rc >= 0:
        return 0
    e = _errno_of(rc)
    if rc == -ETIMEDOUT:
        raise RingTimeout(f"ring {ring}: {what} timed out", e)
    if rc == FE_EOF:
        raise RingEOF(f"ring {ring}: {what}: end of stream", e)
    if rc == FE_ABORTED:
        raise RingAborted(f"ring {ring}: {what}: the ring was aborted", e)
    if rc == FE_ENOTHELD:
        raise RingNotHeld(f"ring {ring}: {what}: sequence not held by this caller", e)
    if rc == -EBUSY:
        raise RingBusy(f"ring {ring}: {what}: the role is held by another live process", e)
    if rc == -EPIPE:
        raise RingEnded(f"ring {ring}: {what}: the stream has already ended", e)
    if rc == -ENOENT:
        raise RingNotFound(f"ring {ring}: no such shared-memory segment", e)
    if rc == -EEXIST:
        raise RingExists(f"ring {ring}: a segment of that name exists", e)
    if rc == FE_EBADRING or rc == FE_EVERSION:
        raise RingNotARing(f"ring {ring}: {fe_strerror(rc).decode()}", e)
    if rc == -EINVAL:
        raise RingInvalid(f"ring {ring}: {what}: invalid argument", e)
    if rc == FE_ECLOSED:
        raise RingClosed(f"ring {ring}: {what}: ring is closed", e)
    raise RingOSError(f"ring {ring}: {what}: {fe_strerror(rc).decode()}", e)


cdef class _Mapping:
    """Owns the C handle and so the mapping.  Every numpy view holds a reference,
    as does every wait in flight: the memory goes away only with the last of them.
    What the handle holds (roles, items) is let go sooner, at Ring.close(), or when
    the last call in flight at that moment returns."""
    cdef fe_ring *r
    cdef int inflight  # claims and takes of this handle waiting right now
    cdef bint closing  # Ring.close() was called: release when inflight is 0

    cdef void enter(self) noexcept:
        self.inflight += 1

    cdef void leave(self) noexcept:
        self.inflight -= 1
        if self.closing and self.inflight == 0:
            fe_release(self.r)

    cdef void close(self) noexcept:
        self.closing = True
        if self.inflight == 0:
            fe_release(self.r)

    def __dealloc__(self):
        if self.r is not NULL:
            fe_close(self.r)
            self.r = NULL


cdef class Ring:
    """A shared-memory ring of frame slots: one producer, then stages of consumers.

    Create it with `Ring.create(...)`, open it elsewhere with `Ring.open(name)`.
    """
    cdef _Mapping _m
    cdef readonly str name
    cdef readonly uint32_t slots
    cdef readonly uint64_t slot_bytes
    cdef readonly uint64_t stride
    cdef readonly uint32_t lookback
    cdef readonly tuple stages
    cdef uint32_t _nstages
    cdef int _creator_pid  # this process's pid if it created the segment, else 0

    def __cinit__(self):
        self._m = None

    @staticmethod
    def create(slots: int = 64, slot_bytes: int = 4096, stages=("pool", "ordered"),
               lookback: int = 0, name: str | None = None, user_bytes: int = 0) -> "Ring":
        """Create and size a new segment; `stages` lists the consumer stages in order;
        `user_bytes` reserves a zeroed area for the application (see `user()`)."""
        cdef fe_config cfg
        cdef fe_ring *r = NULL
        if isinstance(stages, str):
            stages = (stages,)
        stages = tuple(stages)
        if not 1 <= len(stages) <= FE_MAX_STAGES - 1:
            raise RingInvalid(f"stages must list 1 to {FE_MAX_STAGES - 1} consumer stages, not {len(stages)}")
        for i, kind in enumerate(stages):
            if kind not in _KINDS:
                raise RingInvalid(f"stage {i + 1}: kind must be 'pool' or 'ordered', not {kind!r}")
            cfg.kinds[i] = _KINDS[kind]
        if slots < 2 or slots & (slots - 1) or slots > 1 << 30:
            raise RingInvalid(f"slots must be a power of two from 2 to 2**30, not {slots}")
        if slot_bytes < 1:
            raise RingInvalid(f"slot_bytes must be at least 1, not {slot_bytes}")
        if not 0 <= lookback < slots:
            raise RingInvalid(f"lookback must be from 0 to slots - 1 ({slots - 1}), not {lookback}")
        cfg.slots = slots
        cfg.slot_bytes = slot_bytes
        cfg.nstages = len(stages)
        cfg.lookback = lookback
        if not 0 <= user_bytes <= FE_USER_MAX:
            raise RingInvalid(f"user_bytes must be from 0 to {FE_USER_MAX}, not {user_bytes}")
        cfg.user_bytes = user_bytes
        bname = name.encode() if name is not None else None
        cdef const char *cname = NULL
        if bname is not None:
            cname = bname
        with nogil:
            rc = fe_create(cname, &cfg, &r)
        _check(rc, name or "(new)", "create")
        ring = Ring._wrap(r)
        ring._creator_pid = os.getpid()
        _created[ring.name] = ring._creator_pid
        return ring

    @staticmethod
    def open(name: str) -> "Ring":
        """Attach to an existing ring by name; the header is checked first."""
        cdef fe_ring *r = NULL
        cdef const char *why = NULL
        bname = name.encode()
        cdef const char *cname = bname
        with nogil:  # mapping a large ring takes a while (its pages are populated)
            rc = fe_open_why(cname, &r, &why)
        if rc == -EINVAL:  # a name fe_open() refuses, or a folder (shm_open says EINVAL)
            raise RingInvalid(f"ring {name}: not a ring name (1 to {FE_NAME_MAX - 1} "
                              f"characters, no '/' after the first) or not a segment", EINVAL)
        if why is not NULL:
            problem = why.decode()
            raise RingNotARing(f"ring {name}: not a frame-engine ring: {problem}",
                               _errno_of(rc), problem)
        _check(rc, name, "open")
        return Ring._wrap(r)

    @staticmethod
    cdef Ring _wrap(fe_ring *r):
        cdef Ring ring = Ring.__new__(Ring)
        cdef _Mapping m = _Mapping.__new__(_Mapping)
        m.r = r
        ring._m = m
        ring.name = fe_name(r).decode()
        ring.slots = fe_slots(r)
        ring.slot_bytes = fe_slot_bytes(r)
        ring.stride = fe_stride(r)
        ring.lookback = fe_lookback(r)
        ring._nstages = fe_nstages(r)
        ring.stages = tuple(_KIND_NAMES[fe_stage_kind(r, k)] for k in range(1, ring._nstages + 1))
        ring._creator_pid = 0
        return ring

    cdef inline fe_ring *_h(self) except NULL:
        if self._m is None:
            raise RingClosed(f"ring {self.name}: ring is closed", FE_ECLOSED)
        return self._m.r

    cdef int _stage(self, stage, int first=1) except -1:
        """A stage number from `first` (1; 0 where the producer counts) to nstages."""
        # Not an `int` annotation on the methods: Cython converts those with int(),
        # which made stage 1.5 stage 1.  numpy integers are stages; 1.5 and "1" are not.
        cdef object k = stage
        if type(k) is not int:
            try:
                k = operator.index(stage)
            except TypeError:
                k = None
        if k is None or not first <= k <= self._nstages:
            raise RingInvalid(
                f"ring {self.name}: stage {stage!r} does not exist: the consumer stages are "
                f"1..{self._nstages} {self.stages}")
        return k

    # ---- properties ----------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._m is None

    @property
    def creator(self) -> int:
        """The pid of the process that created the segment."""
        return fe_creator(self._h())

    @property
    def creator_start(self) -> int:
        """The creator's start time (/proc/<pid>/stat field 22), to tell a reused pid."""
        return fe_creator_start(self._h())

    @property
    def end_seq(self):
        """None until the producer ends the stream, then the number of items in it."""
        cdef uint64_t e = fe_end_seq(self._h())
        return None if e == <uint64_t>-1 else e

    @property
    def aborted(self) -> bool:
        return fe_aborted(self._h()) != 0

    @property
    def spin_ns(self):
        raise AttributeError("spin_ns is write-only")

    @spin_ns.setter
    def spin_ns(self, ns):
        """How long a wait spins before it sleeps, for this handle (default 20 us)."""
        fe_set_spin_ns(self._h(), int(ns))

    # ---- producer ------------------------------------------------------

    def claim(self, n: int = 1, timeout=None) -> int:
        """Wait for n free slots; return the first of n consecutive sequences."""
        cdef fe_ring *r = self._h()
        cdef _Mapping keep = self._m  # the mapping outlives a close() from another thread
        cdef uint64_t seq = 0
        cdef int64_t deadline = _deadline(timeout)
        cdef int rc
        cdef uint32_t cn
        if not 1 <= n <= self.slots - self.lookback:
            raise RingInvalid(
                f"ring {self.name}: claim of {n} items: must be 1..{self.slots - self.lookback} "
                f"(slots - lookback)")
        cn = n
        keep.enter()
        try:
            while True:
                with nogil:
                    rc = fe_claim(r, cn, _slice(deadline), &seq)
                if not _again(r, rc, deadline):
                    break
                if keep.closing:  # closed by another thread: stop at the end of a slice
                    rc = FE_ECLOSED
                    break
        finally:
            keep.leave()
        if rc < 0:  # messages are built only on failure: this is the per-frame path
            if rc == -EBUSY:
                raise RingBusy(f"ring {self.name}: claim of {n}: {_PRODUCER_HELD}")
            _check(rc, self.name, f"claim of {n}")
        return seq

    def publish(self, seq: int, n: int = 1) -> None:
        """Hand claimed items, in order, to stage 1."""
        cdef fe_ring *r = self._h()
        if n < 1:
            raise RingInvalid(f"ring {self.name}: publish of {n} items")
        rc = fe_publish(r, seq, n)
        if rc == 0:
            return
        if rc == FE_ENOTHELD:
            raise RingNotHeld(f"ring {self.name}: publish {seq}..{seq + n - 1}: not the next "
                              f"claimed, unpublished items of this producer")
        _check(rc, self.name, "publish")

    def end(self) -> None:
        """End the stream after the published items; consumers drain, then get EOFError."""
        rc = fe_end(self._h())
        if rc == -EBUSY:
            raise RingBusy(f"ring {self.name}: end: {_PRODUCER_HELD}")
        _check(rc, self.name, "end")

    def abandon(self) -> None:
        """Give back the claimed items not yet published (a batch that could not be
        filled); the next claim starts right after the published ones."""
        rc = fe_abandon(self._h())
        if rc == FE_ENOTHELD:
            raise RingNotHeld(f"ring {self.name}: abandon: this handle is not the producer")

    def abort(self) -> None:
        """Wake every waiter with RingAborted, now and for every later wait."""
        fe_abort(self._h())

    # ---- consumers -----------------------------------------------------

    def take(self, stage=1, max_n: int = 1, timeout=None) -> tuple:
        """Wait for items at `stage`; return (seq, n), a run of 1..max_n items.
        Raises EOFError once the stream ended and the stage is drained."""
        cdef fe_ring *r = self._h()
        cdef _Mapping keep = self._m
        cdef uint32_t cstage = self._stage(stage)
        cdef uint64_t seq = 0
        cdef uint32_t n = 0
        cdef int64_t deadline = _deadline(timeout)
        cdef int rc
        if max_n < 1:
            raise RingInvalid(f"ring {self.name}: max_n must be at least 1, not {max_n}")
        cdef uint32_t cmax = self.slots if max_n > self.slots else max_n
        keep.enter()
        try:
            while True:
                with nogil:
                    rc = fe_take(r, cstage, cmax, _slice(deadline), &seq, &n)
                if not _again(r, rc, deadline):
                    break
                if keep.closing:  # closed by another thread: stop at the end of a slice
                    rc = FE_ECLOSED
                    break
        finally:
            keep.leave()
        if rc < 0:
            if rc == -EBUSY:
                raise RingBusy(
                    f"ring {self.name}: take at stage {stage}: the stage is ordered and "
                    f"another live process (or another handle) is its consumer: it has one")
            _check(rc, self.name, f"take at stage {stage}")
        return seq, n

    def done(self, stage, seq: int, n: int = 1) -> None:
        """Finish items this caller holds at `stage`; they move on to the next stage."""
        cdef fe_ring *r = self._h()
        cdef uint32_t cstage = self._stage(stage)
        if not 1 <= n <= self.slots:
            raise RingInvalid(f"ring {self.name}: done of {n} items: must be 1..{self.slots}")
        rc = fe_done(r, cstage, seq, n)
        if rc == 0:
            return
        if rc == FE_ENOTHELD:
            raise RingNotHeld(f"ring {self.name}: done {seq}..{seq + n - 1} at stage {stage}: "
                              f"not held by this caller at that stage")
        _check(rc, self.name, f"done at stage {stage}")

    def ready(self, stage) -> int:
        """Items waiting for `stage` right now."""
        return fe_ready(self._h(), self._stage(stage))

    # ---- supervisor ----------------------------------------------------

    def reclaim(self, pid: int) -> int:
        """Move on the items a dead process held, flagged failed; return how many."""
        cdef fe_ring *r = self._h()
        cdef _Mapping keep = self._m
        cdef int cpid = pid
        with nogil:  # it may wait out the claim window's grace period (50 ms)
            rc = fe_reclaim(r, cpid)
        _check(rc, self.name, f"reclaim of pid {pid}")
        return rc

    def failed(self, seq: int) -> bool:
        """True if a stage gave up on item `seq` (its holder died)."""
        rc = fe_failed(self._h(), seq)
        if rc < 0:
            raise RingInvalid(f"ring {self.name}: item {seq} is not in the ring")
        return rc == 1

    def stats(self, stage=None):
        """Counters of one stage (0 = producer), or a list of all: items, taken,
        waits, stalls, failed.  Read without a lock; each value is exact, the set
        is not a snapshot."""
        cdef fe_ring *r = self._h()
        cdef fe_stage_stats s
        if stage is None:
            return [self.stats(k) for k in range(self._nstages + 1)]
        fe_stats(r, self._stage(stage, 0), &s)
        return {"items": s.items, "taken": s.taken, "waits": s.waits, "stalls": s.stalls,
                "failed": s.failed}

    # ---- memory ----------------------------------------------------------

    def view(self, seq: int, shape=None, dtype=np.uint8, readonly: bool = False,
             offset: int = 0):
        """A numpy array over the slot of `seq`, no copy: by default the slot's bytes;
        with `shape`/`dtype`, an array of that layout `offset` bytes into the slot."""
        cdef fe_ring *r = self._h()
        if not fe_in_ring(r, seq):
            raise RingInvalid(f"ring {self.name}: item {seq} is not in the ring "
                              f"(not claimed yet, or its slot was reused)")
        return self._array(<char *>fe_slot(r, seq), 0, shape, dtype, readonly, offset,
                           self.slot_bytes)

    def views(self, seq: int, n: int, shape=None, dtype=np.uint8, readonly: bool = False,
              offset: int = 0):
        """One array over the run of items [seq, seq + n): axis 0 is the item."""
        cdef fe_ring *r = self._h()
        if not 1 <= n <= self.slots:
            raise RingInvalid(f"ring {self.name}: views of {n} items: must be 1..{self.slots}")
        if not (fe_in_ring(r, seq) and fe_in_ring(r, seq + n - 1)):
            raise RingInvalid(f"ring {self.name}: items {seq}..{seq + n - 1} are not all in the ring")
        return self._array(<char *>fe_slot(r, seq), n, shape, dtype, readonly, offset,
                           self.slot_bytes)

    def user(self, shape=None, dtype=np.uint8, offset: int = 0):
        """A numpy array over the application's area of the segment (user_bytes at
        create): shared by every attached process, with no synchronisation."""
        cdef fe_ring *r = self._h()
        cdef uint32_t size = fe_user_bytes(r)
        if size == 0:
            raise RingInvalid(f"ring {self.name}: created without a user area (user_bytes=0)")
        return self._array(<char *>fe_user(r), 0, shape, dtype, False, offset, size)

    cdef object _array(self, char *ptr, Py_ssize_t n, shape, dtype, bint readonly,
                       Py_ssize_t offset, Py_ssize_t limit):
        """An array over `limit` bytes at ptr (n items `stride` apart if n), no copy."""
        cdef cnp.npy_intp dims[34]
        cdef cnp.npy_intp strides[34]
        cdef int nd = 0, i
        cdef cnp.dtype dt = _UINT8 if dtype is np.uint8 else np.dtype(dtype)
        cdef Py_ssize_t itemsize = dt.itemsize
        cdef Py_ssize_t size = itemsize
        if offset < 0 or offset > limit or offset % dt.alignment:
            raise RingInvalid(f"ring {self.name}: offset {offset} is outside the slot or not "
                              f"aligned for {dt}")
        if shape is None:
            shape = ((limit - offset) // itemsize,)
        elif isinstance(shape, int):
            shape = (shape,)
        if len(shape) > 32:
            raise RingInvalid("shape has too many dimensions")
        if n:
            dims[0] = n
            strides[0] = self.stride
            nd = 1
        for d in shape:
            if d < 0:
                raise RingInvalid(f"ring {self.name}: negative dimension in shape {shape}")
            dims[nd] = d
            nd += 1
            size *= d
        if size + offset > limit:
            raise RingInvalid(f"ring {self.name}: an item of shape {tuple(shape)} and dtype {dt} "
                              f"({size} bytes) at offset {offset} is larger than a slot "
                              f"({limit} bytes)")
        # C-contiguous strides inside the item; axis 0 of a run steps by the slot stride
        cdef Py_ssize_t acc = itemsize
        i = nd - 1
        while i >= (1 if n else 0):
            strides[i] = acc
            acc *= dims[i]
            i -= 1
        cdef int flags = cnp.NPY_ARRAY_ALIGNED | (0 if readonly else cnp.NPY_ARRAY_WRITEABLE)
        Py_INCREF(dt)  # PyArray_NewFromDescr steals a reference to the descriptor
        arr = PyArray_NewFromDescr(np.ndarray, dt, nd, dims, strides, ptr + offset, flags, None)
        cnp.set_array_base(arr, self._m)  # the view keeps the mapping alive
        return arr

    def write(self, seq: int, data) -> None:
        """Copy a bytes-like object into the slot of `seq`."""
        cdef fe_ring *r = self._h()
        cdef const unsigned char[::1] src = memoryview(data).cast("B")
        if <uint64_t>src.shape[0] > self.slot_bytes:
            raise RingInvalid(f"ring {self.name}: an item of {src.shape[0]} bytes is larger than "
                              f"a slot ({self.slot_bytes} bytes)")
        if not fe_in_ring(r, seq):
            raise RingInvalid(f"ring {self.name}: item {seq} is not in the ring")
        if src.shape[0]:
            memcpy(fe_slot(r, seq), &src[0], src.shape[0])

    # ---- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Detach.  The handle's roles (producer, ordered consumer) are freed and the
        items it holds move on flagged failed at once, as a dead process's do (or,
        if another thread of this handle is waiting in claim or take, when that
        wait returns: within half a second).  Views handed out stay valid: the
        mapping goes with the last of them."""
        if self._m is not None:
            self._m.close()
        self._m = None

    def unlink(self) -> None:
        """Remove the segment's name; attached processes keep their mapping."""
        rc = fe_unlink(self.name.encode())
        _created.pop(self.name, None)
        if rc != -ENOENT:
            _check(rc, self.name, "unlink")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """Close, and unlink if this process created the ring."""
        self.close()
        if self._creator_pid == os.getpid():
            self.unlink()
        return False

    def __reduce__(self):
        # Crossing a process boundary (spawn, pickle) reopens by name.
        return (Ring.open, (self.name,))

    def __repr__(self):
        state = "closed" if self._m is None else f"{self.slots} slots of {self.slot_bytes} B"
        return f"<Ring {self.name}: {state}, stages {self.stages}, lookback {self.lookback}>"
