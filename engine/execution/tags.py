"""Strategy tags: the engine's pseudo client-order-id.

TradeLocker has no client order id, so every order carries a ``strategyId`` the engine chose and
can search for after an ambiguous failure (DESIGN.md, Policies 1). A tag must be unique across
restarts and processes, short (the venue documents 31 characters), and stable for a given order
once minted. Layout, 22 characters of lower-case base32::

    "e" + process epoch (7, seconds, base32) + counter (6) + hash of the signal id (8)

The process epoch makes tags from two runs distinct even when the counter restarts at zero; the
hash lets a person match a tag to a signal by eye and makes a collision across two engines that
started in the same second need the same counter *and* the same signal-id hash.
"""

from __future__ import annotations

import hashlib
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # base32hex, lower case: sorts like the numbers
TAG_LENGTH = 22


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


class TagMint:
    """Mints tags and remembers which signal each belongs to (for the life of the process;
    the journal keeps the mapping across restarts)."""

    __slots__ = ("_by_signal", "_by_tag", "_counter", "_prefix")

    def __init__(self, epoch_s: int | None = None) -> None:
        epoch = int(time.time()) if epoch_s is None else epoch_s
        self._prefix = "e" + _b32(epoch, 7)
        self._counter = 0
        self._by_tag: dict[str, str] = {}
        self._by_signal: dict[str, str] = {}

    def mint(self, signal_id: str) -> str:
        """A fresh tag for ``signal_id``. A resubmission mints a new tag, so a late original
        and its resubmission can be told apart."""
        self._counter += 1
        digest = hashlib.blake2s(signal_id.encode(), digest_size=5).digest()
        tag = self._prefix + _b32(self._counter, 6) + _b32(int.from_bytes(digest, "big"), 8)
        self._by_tag[tag] = signal_id
        self._by_signal[signal_id] = tag
        return tag

    def remember(self, tag: str, signal_id: str) -> None:
        """Restore a mapping read back from the journal after a restart."""
        self._by_tag[tag] = signal_id
        self._by_signal.setdefault(signal_id, tag)

    def signal_for(self, tag: str) -> str | None:
        return self._by_tag.get(tag)

    def tag_for(self, signal_id: str) -> str | None:
        return self._by_signal.get(signal_id)
