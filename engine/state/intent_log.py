"""The intent log: append-only intent frames in memory-mapped segment files.

``Journal.begin`` copies one frame per order into the current segment BEFORE the order goes on
the wire. The copy is a memory copy into a shared mapping: no system call, and the bytes are in
the kernel's page cache when it returns, so they survive the death of the process (SIGKILL, OOM
kill, a crash). At the next open the surviving segments are replayed into SQLite
(:func:`read_intents`), and a segment is deleted once every frame in it is committed there.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import orjson

from engine.model.clock import LIVE

IntentRow = tuple[str, str, str, int]  # signal_id, account, strategy_tag, begun_ns (epoch ns)

# Intent frame: payload length, CRC-32 of the payload, then the orjson payload
# [signal_id, account, strategy_tag, begun_ns]. A torn or corrupt frame ends the replay of its
# segment: frames are appended in call order by one thread, so a torn frame is the last one,
# the one whose ``begin`` never returned.
_FRAME = FRAME_HEAD = struct.Struct("<II")


def intent_frame(signal_id: str, account: str, strategy_tag: str, begun_ns: int) -> bytes:
    return encode_intent((signal_id, account, strategy_tag, begun_ns))


def encode_intent(row: IntentRow) -> bytes:
    """One framed intent record (the tuple ``Journal.begin`` builds anyway)."""
    payload = orjson.dumps(row)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def read_intents(data: bytes) -> list[IntentRow]:
    """Decode an intent segment; stops at the first torn or corrupt frame."""
    out: list[IntentRow] = []
    pos, end, head = 0, len(data), _FRAME.size
    while pos + head <= end:
        size, crc = _FRAME.unpack_from(data, pos)
        if size == 0:
            break  # the zero-filled rest of a preallocated segment
        payload = data[pos + head : pos + head + size]
        if len(payload) != size or zlib.crc32(payload) != crc:
            break
        try:
            sid, account, tag, begun = orjson.loads(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            break
        out.append((str(sid), str(account), str(tag), int(begun)))
        pos += head + size
    return out


class IntentLog:
    """Append-only intent records in memory-mapped segment files ``<name>.intents-*``.

    A segment is made ready before it is used, so that a write through the mapping on the order
    path is a memory copy and nothing more: zeros are written and ``fdatasync``ed (the blocks
    exist on disk: a full disk shows up as an error here, never as a SIGBUS on the order path,
    and no write has to allocate or convert an extent), then every page is touched through the
    mapping (the first-write fault, which on ext4 may wait for a journal commit, is taken here;
    measured at about 1 ms on this machine's disk). A segment is zero after its last frame, which
    is where replay stops. The next segment (the spare) is prepared by the journal's writer
    thread (:meth:`prepare_spare`), so a rotation on the order path only swaps two mappings.
    """

    __slots__ = ("_dir", "_map", "_name", "_path", "_pos", "_size", "_spare", "_wall_ns")

    _names = itertools.count(1)

    def __init__(
        self,
        directory: Path,
        name: str,
        segment_bytes: int,
        wall_ns: Callable[[], int] = LIVE.time_ns,
    ) -> None:
        # ``wall_ns`` (the journal's clock) orders segment names across runs; the counter within.
        self._wall_ns = wall_ns
        if segment_bytes < mmap.PAGESIZE:
            raise ValueError(
                f"intent_segment_bytes must be at least {mmap.PAGESIZE}, got {segment_bytes}"
            )
        self._dir, self._name, self._size = directory, name, segment_bytes
        self._path, self._map = self._create()
        self._pos = 0
        self._spare: tuple[Path, mmap.mmap] | None = self._create()

    @staticmethod
    def segments(directory: Path, name: str) -> list[Path]:
        return sorted(directory.glob(name + ".intents-*"))

    def append(self, frame: bytes) -> Path | None:
        """Copy one frame in; returns the path of a segment this append filled and left."""
        end = self._pos + len(frame)
        retired = None
        if end > self._size:
            if len(frame) > self._size:
                raise ValueError(f"intent record of {len(frame)} bytes exceeds a segment")
            retired = self._rotate()
            end = len(frame)
        self._map[end - len(frame) : end] = frame
        self._pos = end
        return retired

    def prepare_spare(self) -> None:
        """Make the next segment ready if there is none (called from the writer thread)."""
        if self._spare is None:
            with contextlib.suppress(OSError):  # the rotation then makes one, or says why not
                self._spare = self._create()

    def close(self, *, delete: bool) -> None:
        self._map.close()
        spare, self._spare = self._spare, None
        if spare is not None:
            spare[1].close()
            spare[0].unlink(missing_ok=True)
        if delete:
            self._path.unlink(missing_ok=True)

    def _rotate(self) -> Path:
        spare, self._spare = self._spare, None
        if spare is None:  # the writer has not prepared one yet: pay for it here, once
            spare = self._create()
        old_path, old_map = self._path, self._map
        self._path, self._map = spare
        self._pos = 0
        old_map.close()
        return old_path

    def _create(self) -> tuple[Path, mmap.mmap]:
        path = self._dir / f"{self._name}.intents-{self._wall_ns():020d}-{next(self._names):06d}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            zeros = bytes(min(self._size, 1 << 16))
            left = self._size
            while left > 0:
                left -= os.write(fd, zeros[: min(left, len(zeros))])
            os.fdatasync(fd)
            mapping = mmap.mmap(fd, self._size)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        for offset in range(0, self._size, mmap.PAGESIZE):
            mapping[offset] = 0
        return path, mapping
