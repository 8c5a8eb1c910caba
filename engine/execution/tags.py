"""Strategy tags: the engine's pseudo client-order-id.

TradeLocker has no client order id, so every order carries a ``strategyId`` the engine chose and
can search for after an ambiguous failure (docs/architecture.md, policy 1). The tag is **derived
from the signal**, not minted from process state: the same leg of the same signal gets the same tag
in every run, on every engine process of a consumer group. That is what lets a restarted engine ask
the venue "did an earlier run already send this?" for a re-delivered signal whose journal intent
was lost to a power failure (engine.state.journal, :meth:`Journal.suspect`).

Layout, 22 characters (TradeLocker accepts 32, docs/api-reference.md section 7.5), shorter only
for a venue that declares a smaller ``Capabilities.max_tag_length``::

    "s" + 21 lower-case hex digits of BLAKE2s(leg key, ts, attempt)

* the leg key is the journal key (``id``, or ``id@alias`` for a fan-out member), so every
  account's leg of a group signal has its own tag;
* the signal's ``ts`` is in the hash so a generator that reuses an id later (beyond the journal's
  retention) gets a fresh tag, not the tag of an old order still listed in the order history;
* ``attempt`` separates a ``resubmit_once`` resubmission from the original, so a late original
  and its resubmission can be told apart.

84 bits of hash (hex, because it is computed in C: base64's base32 is pure Python in 3.11):
among a million orders on one account the chance of any collision is about 3e-14.
"""

from __future__ import annotations

import hashlib

from engine.model.errors import ConfigError

TAG_PREFIX = "s"
TAG_LENGTH = 22
# Below this a tag has fewer than 44 bits of hash: collisions among an account's orders stop being
# negligible, and a collision makes reconciliation by tag find the wrong order.
MIN_TAG_LENGTH = 12
_blake2s = hashlib.blake2s


def strategy_tag(
    leg_key: str, generated_ns: int = 0, attempt: int = 0, length: int = TAG_LENGTH
) -> str:
    """The tag of ``leg_key``'s order (``attempt`` 0 = the original, 1 = a resubmission),
    ``length`` characters (at most TAG_LENGTH)."""
    digest = hashlib.blake2s(
        f"{leg_key}\x1f{generated_ns}\x1f{attempt}".encode(), digest_size=11
    ).hexdigest()
    return TAG_PREFIX + digest[: length - 1]


class TagMint:
    """Derives tags for the pipeline (kept as an object so a test or a deployment can swap the
    derivation; it holds no state, so nothing grows with the number of orders).

    ``max_length`` is the smallest tag limit among the venues the tags go to
    (``Capabilities.max_tag_length``): tags are TAG_LENGTH characters, or that limit when it is
    smaller. A tag is the same in every run only while that limit is, so a venue's limit below
    TAG_LENGTH must not change between runs with orders in doubt."""

    __slots__ = ("length",)

    def __init__(self, max_length: int = TAG_LENGTH) -> None:
        if max_length < MIN_TAG_LENGTH:
            raise ConfigError(
                f"the venue accepts strategy tags of at most {max_length} characters; the engine "
                f"needs {MIN_TAG_LENGTH} to tell its orders apart: this venue cannot be used"
            )
        self.length = min(TAG_LENGTH, max_length)

    def mint(self, leg_key: str, generated_ns: int = 0, attempt: int = 0) -> str:
        # strategy_tag's body, not a call to it: one Python frame less per order.
        digest = _blake2s(
            f"{leg_key}\x1f{generated_ns}\x1f{attempt}".encode(), digest_size=11
        ).hexdigest()
        return TAG_PREFIX + digest[: self.length - 1]
