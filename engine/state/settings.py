"""What the engine's durable state is configured with (read by ``engine.app.config``; each
field's default here is the only default)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# "process": an order's intent record survives the engine being killed, without an fsync on the
# order path (an unclean reboot is covered by looking signals up at the venue by tag); "power":
# every intent is fsynced before the order goes out (slower, survives power loss).
BeginDurability = Literal["process", "power"]


@dataclass(frozen=True, slots=True)
class JournalSettings:
    """The decision journal, its intent log, and the state kept beside it."""

    path: str = "tl-engine.journal.sqlite"
    # Refresh tokens (without Vault) and the stop-limit book; None: the journal's directory.
    state_dir: str | None = None
    begin_durability: BeginDurability = "process"
    suspect_window_s: float = 3600.0  # after an unclean reboot: how far back to look up by tag
    # How long a decided signal id is remembered (never executed again) after its decision.
    retention_s: float = 7 * 86400.0

    @property
    def state_path(self) -> Path:
        """Where state other than the journal lives: ``state_dir``, or beside the journal."""
        return Path(self.state_dir) if self.state_dir else Path(self.path).parent
