"""The TradeLocker adapter: one folder, small modules of one role each.

``settings``       the login section of the config, and the resolved login/account specs
``factory``        builds the venue and its stream sessions from ``settings`` and a secret store
``auth``           JWT token manager per login (background refresh, single-flight, rotation)
``rest``           REST client per account (warm pinned connections, outcome policy, safe retries)
``wire``           the lean pinned-connection order transport
``errors``         HTTP/venue reply -> payload or typed :mod:`engine.model.errors` exception
``columns``        column-array decoding driven by ``/trade/config``
``instruments``    instruments by symbol per account, details merged, TTL cache, INFO route probing
``order_body``     the place-order checks and JSON body
``rate_limits``    TradeLocker's route types, ``rateLimits`` parsing, the route of each action
``quotes``         the per-login quote feed (the venue's quote source), paced by QUOTES
``venue``          :class:`~engine.tradelocker.venue.TradeLockerVenue`, the Venue protocol
``stream``         the Streams API client (Socket.IO over picows), typed message decoding
``stream_session`` one login's Streams connection kept up (subscriptions, tokens, reconnects)

Nothing is imported here so that ``import engine.tradelocker.stream`` stays light.
"""
