"""Which input stamps the lifter believes, and how many messages were lost on the way (no ROS).

Stamp policy. `last` is the stamp of the last accepted message, `jump_s` the largest step
believed at once (the node uses max(track_timeout_s, 1 s): a step that keeps tracks alive).
- last < t <= last + jump_s: accepted. (A step over max_gap_s restarts the persons' windows.)
- t == last: `stamp_repeated`, ignored.
- last - jump_s <= t < last: `stamp_backwards`, a late or reordered message: ignored. Such
  messages repeat the past, so they never move the clock (lifting them would publish stamps
  older than ones already published).
- t < last - jump_s: `stamp_backwards` (a bad stamp, or a clock that restarted), ignored.
- t > last + jump_s: `stamp_jump` (a bad stamp, or a clock that jumped ahead), ignored.
A stamp more than jump_s away is one message's mistake until CONFIRMATIONS consecutive messages
agree on the new timeline (all that far away, each after the one before by at most jump_s): the
last of them is then accepted as `clock_jump_back` or `clock_jump_ahead`, the ones before it
stay ignored. So a stamp of 0 or +1 h, or a message 0.6 s late, changes nothing (no track reset,
no id change, nothing published with it), while a bag that loops or a simulation that restarts
costs CONFIRMATIONS - 1 frames.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

CONFIRMATIONS = 3  # consecutive messages that must agree before the clock jumps
MIN_JUMP_S = 1.0  # smallest jump_s the node uses (track_timeout_s may be shorter)


@dataclass(frozen=True)
class StampVerdict:
    """accepted: lift this message. reason: None for a normal stamp, else the counted reason
    (`stamp_*` when ignored, `clock_jump_*` when accepted as a new clock). jump_s: new clock
    minus old one for a clock jump, else 0."""

    accepted: bool
    reason: str | None = None
    jump_s: float = 0.0


ACCEPTED = StampVerdict(True)


class StampPolicy:
    """The policy of the module docstring; `check` each message's stamp in arrival order."""

    def __init__(self, confirmations: int = CONFIRMATIONS):
        if confirmations < 1:
            raise ValueError(f"confirmations must be >= 1, got {confirmations}")
        self.confirmations = int(confirmations)
        self.last_s: float | None = None
        self._pending: list[float] = []  # consecutive out-of-order stamps agreeing so far

    def check(self, stamp_s: float, jump_s: float) -> StampVerdict:
        last = self.last_s
        if last is None or last < stamp_s <= last + jump_s:
            self._pending.clear()  # an outlier followed by a normal stamp was just one outlier
            self.last_s = stamp_s
            return ACCEPTED
        if stamp_s == last:
            return StampVerdict(False, "stamp_repeated")
        if last - jump_s <= stamp_s < last:
            return StampVerdict(False, "stamp_backwards")  # late: never a clock jump
        pending = self._pending
        if pending and stamp_s == pending[-1]:  # a duplicate neither confirms nor breaks a run
            return StampVerdict(False, "stamp_repeated")
        if pending and not pending[-1] < stamp_s <= pending[-1] + jump_s:
            pending.clear()
        pending.append(stamp_s)
        if len(pending) < self.confirmations:
            return StampVerdict(False, "stamp_backwards" if stamp_s < last else "stamp_jump")
        pending.clear()
        self.last_s = stamp_s
        return StampVerdict(True, "clock_jump_back" if stamp_s < last else "clock_jump_ahead",
                            stamp_s - last)


class SequenceGaps:
    """Messages lost before the node saw them, from each publisher's publication sequence
    numbers (consecutive per publisher): a jump from n to n + k means k - 1 were lost (dropped by
    a best-effort transport, or overwritten in the subscription's queue while the executor was
    busy). Middlewares without sequence numbers give 0 or None: nothing is counted then."""

    MAX_PUBLISHERS = 64  # publishers remembered (the oldest is forgotten first)

    def __init__(self):
        self._last: OrderedDict[bytes, int] = OrderedDict()

    def lost(self, publisher: bytes | None, sequence: int | None) -> int:
        """Messages lost since this publisher's previous message (0 for its first one)."""
        if publisher is None or not sequence:
            return 0
        last = self._last.pop(publisher, None)
        self._last[publisher] = sequence if last is None else max(last, sequence)
        while len(self._last) > self.MAX_PUBLISHERS:
            self._last.popitem(last=False)
        return 0 if last is None or sequence <= last else sequence - last - 1
