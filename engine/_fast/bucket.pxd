# Rate-limit token bucket: C-level methods for other Cython modules (no Python dispatch).
from libc.stdint cimport int64_t

cdef class TokenBucket:
    cdef int64_t* _ring
    cdef Py_ssize_t _head
    cdef Py_ssize_t _alert_back
    cdef Py_ssize_t _in_flight
    cdef int64_t _paused_until
    cdef readonly long long limit
    cdef readonly double margin
    cdef readonly Py_ssize_t capacity
    cdef readonly long long interval_ns

    cpdef bint try_acquire(self, int64_t now_ns)
    cpdef bint take(self, int64_t now_ns)
    cpdef void give_back(self, int64_t now_ns)
    cpdef int64_t wait_ns(self, int64_t now_ns)
    cpdef Py_ssize_t available(self, int64_t now_ns)
    cpdef bint near_limit(self, int64_t now_ns)
    cpdef void pause_until(self, int64_t until_ns)
    cpdef void exhaust(self, int64_t now_ns)
