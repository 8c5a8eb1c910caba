# cython: language_level=3
"""Rate-limit token bucket, compiled. Behaviour (and the reasoning behind per-token return) is
defined by the twin engine/_fast/_py/bucket.py. The ring of spend times is one malloc'd int64 array;
no call allocates."""

from libc.math cimport ceil
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

__all__ = ["READY", "Ready", "TokenBucket"]

cdef int64_t NEVER = -(1 << 62)
cdef Py_ssize_t MAX_CAPACITY = 1_000_000
cdef int64_t MAX_INTERVAL_NS = 1 << 52


cdef class TokenBucket:
    def __cinit__(self, limit, double interval_s, double margin=0.1, double alert_ratio=0.8):
        self._ring = NULL

    def __init__(self, limit, double interval_s, double margin=0.1, double alert_ratio=0.8):
        cdef double allowed, back
        cdef Py_ssize_t capacity, i
        cdef double interval_ns
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"rate limit must be a whole number of requests >= 1, got {limit!r}")
        if not (interval_s > 0.0 and interval_s < float("inf")):
            raise ValueError(
                f"rate-limit interval must be a positive number of seconds, got {interval_s!r}"
            )
        if not (0.0 <= margin < 1.0):
            raise ValueError(f"safety margin must be in [0, 1), got {margin!r}")
        if not (0.0 < alert_ratio <= 1.0):
            raise ValueError(f"alert ratio must be in (0, 1], got {alert_ratio!r}")
        if limit > MAX_CAPACITY * 2:
            raise ValueError(f"rate limit {limit} is above the supported {MAX_CAPACITY}")
        allowed = <double>limit * (1.0 - margin)
        capacity = <Py_ssize_t>ceil(allowed - 1e-9)
        if capacity < 1:
            capacity = 1
        if capacity > MAX_CAPACITY:
            raise ValueError(f"rate limit {limit} is above the supported {MAX_CAPACITY}")
        interval_ns = ceil(interval_s * 1e9 * <double>capacity / allowed)
        if interval_ns > <double>MAX_INTERVAL_NS:
            raise ValueError(f"rate-limit interval {interval_s!r}s is too long")
        ring = <int64_t*>malloc(capacity * sizeof(int64_t))
        if ring == NULL:
            raise MemoryError()
        if self._ring != NULL:
            free(self._ring)
        self._ring = ring
        for i in range(capacity):
            ring[i] = NEVER
        self.limit = limit
        self.margin = margin
        self.capacity = capacity
        self.interval_ns = <long long>interval_ns
        self._head = 0
        self._in_flight = 0
        self._paused_until = NEVER
        back = ceil(alert_ratio * <double>capacity - 1e-9)
        self._alert_back = <Py_ssize_t>back if back >= 1 else 1

    def __dealloc__(self):
        if self._ring != NULL:
            free(self._ring)
            self._ring = NULL

    cpdef bint try_acquire(self, int64_t now_ns):
        """Spend a token if one is available at ``now_ns``; it returns one interval later."""
        if not self.take(now_ns):
            return False
        self.give_back(now_ns)
        return True

    cpdef bint take(self, int64_t now_ns):
        """Hold a token if one is available at ``now_ns``, until :meth:`give_back`."""
        if now_ns < self._paused_until or self._in_flight == self.capacity:
            return False
        cdef Py_ssize_t head = self._head
        if now_ns - self._ring[head] < self.interval_ns:
            return False
        head += 1
        self._head = 0 if head == self.capacity else head
        self._in_flight += 1
        return True

    cpdef void give_back(self, int64_t now_ns):
        """A held request got its reply at ``now_ns``: its token returns one interval later."""
        cdef Py_ssize_t held = self._in_flight
        if held == 0:
            return
        cdef Py_ssize_t tail = self._head + self.capacity - held
        if tail >= self.capacity:
            tail -= self.capacity
        self._ring[tail] = now_ns
        self._in_flight = held - 1

    @property
    def in_flight(self):
        return self._in_flight

    cpdef int64_t wait_ns(self, int64_t now_ns):
        """Nanoseconds from ``now_ns`` until a token is available (0: one is available now)."""
        cdef int64_t wait
        if self._in_flight == self.capacity:
            wait = self.interval_ns
        else:
            wait = self._ring[self._head] + self.interval_ns - now_ns
        cdef int64_t pause = self._paused_until - now_ns
        if pause > wait:
            wait = pause
        return wait if wait > 0 else 0

    cpdef Py_ssize_t available(self, int64_t now_ns):
        """Tokens available at ``now_ns`` (0 while paused)."""
        if now_ns < self._paused_until:
            return 0
        # Spend times from the head are oldest first: the available tokens are a prefix, found by
        # binary search (see the twin for why a linear walk is not good enough).
        cdef Py_ssize_t lo = 0
        cdef Py_ssize_t hi = self.capacity - self._in_flight
        cdef Py_ssize_t cap = self.capacity
        cdef Py_ssize_t mid, i
        while lo < hi:
            mid = (lo + hi) >> 1
            i = self._head + mid
            if i >= cap:
                i -= cap
            if now_ns - self._ring[i] >= self.interval_ns:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cpdef bint near_limit(self, int64_t now_ns):
        """True when no more than capacity - alert_back tokens are available (in flight or
        returned within the last interval)."""
        cdef Py_ssize_t k = self.capacity - self._alert_back
        if k >= self.capacity - self._in_flight:
            return True
        cdef Py_ssize_t i = self._head + k
        if i >= self.capacity:
            i -= self.capacity
        return now_ns - self._ring[i] < self.interval_ns

    cpdef void pause_until(self, int64_t until_ns):
        """Refuse every token until ``until_ns`` (a venue 429 with Retry-After). Never shortens."""
        if until_ns > self._paused_until:
            self._paused_until = until_ns

    cpdef void exhaust(self, int64_t now_ns):
        """Mark every returned token spent at ``now_ns`` (a venue 429 without Retry-After)."""
        cdef Py_ssize_t i
        for i in range(self.capacity):
            self._ring[i] = now_ns

    @property
    def paused_until_ns(self):
        return self._paused_until


cdef object _DONE = iter(())


cdef class Ready:
    """An awaitable that is already complete (a free token: the gate's fast path). Its
    ``__await__`` is a C slot: awaiting it runs no Python frame, never suspends and allocates
    nothing (the same exhausted iterator every time)."""

    def __await__(self):
        return _DONE


READY = Ready()
