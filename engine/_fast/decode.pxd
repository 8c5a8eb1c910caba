# Compiled signal decoder, C-level entry point for other Cython code (no Python dispatch).
# Same contract as decode() in decode.pyx: a validated engine.model.domain.Signal, or SignalError.

cdef object c_decode(object payload, object arrived_ns, object targets, double max_qty)
