"""The TradeLocker adapter: one folder, small modules of one role each.

``auth``         JWT token manager per login (background refresh, single-flight, rotation)
``rest``         REST client per account (warm pinned connections, outcome policy, safe retries)
``errors``       HTTP/venue reply -> payload or typed :mod:`engine.model.errors` exception
``columns``      column-array decoding driven by ``/trade/config``
``instruments``  instruments by symbol per account, details merged, TTL cache, INFO route probing
``venue``        :class:`~engine.tradelocker.venue.TradeLockerVenue`, the Venue protocol
``stream``       the Streams API client (Socket.IO over picows)

Nothing is imported here so that ``import engine.tradelocker.stream`` stays light.
"""
