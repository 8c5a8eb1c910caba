# Request serialization: C-level entry points for other Cython modules (no Python dispatch).

cpdef bytes place_order_body(object req)
cpdef bytes with_body(bytes head, bytes body)
cpdef int decimals_of(double step) noexcept
