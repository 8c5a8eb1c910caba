"""tl-engine: a low-latency trade execution engine for TradeLocker accounts."""

__version__ = "0.1.0"
