"""How big a tick may be: its measured cost, and the limits the fire path keeps (architecture.md, "The tick")."""

from __future__ import annotations

__all__ = ["DRAIN_KEEP", "INTAKE_BATCH", "INTAKE_HOLD_MS", "MIN_INTAKE", "TickCost"]

INTAKE_BATCH = 2000  # commands held for intake at most (plus one MIN_INTAKE consume under a backlog)
MIN_INTAKE = 500  # commands a tick takes in even when fires are due: 25 ticks/s take 12,500/s
# ... and every command held longer than this: under sustained load fires are always due, and arrivals beyond
# MIN_INTAKE per tick would otherwise wait for good (B2 at 16,000/s fell behind by seconds). A schedule arrives
# long before it is due (or it wakes the loop: `_gather`), so holding its command this long costs it nothing.
INTAKE_HOLD_MS = 100
# a backlog drained in short ticks (schedules coming due meanwhile) keeps this share of its full rate
DRAIN_KEEP = 0.9


class TickCost:
    """A tick's measured cost, fixed part (consume, begin, send offsets, commit) plus seconds per record (a command
    taken in or a fire): a least-squares line through recent ticks (exponentially forgotten, about `memory` ticks).
    It bounds intake when a fire is due soon, and sizes the backlog chunk a tick fires while others come due."""

    def __init__(self, fixed_s: float = 0.01, per_record_s: float = 25e-6, memory: int = 50) -> None:
        self.fixed_s = fixed_s
        self.per_record_s = per_record_s
        self._decay = 1 - 1 / memory
        self._sums = [0.0] * 5  # n, x, y, xx, xy: x = records, y = seconds

    def add(self, elapsed_s: float, records: int) -> None:
        d, x, y = self._decay, float(records), elapsed_s
        n, sx, sy, sxx, sxy = (
            d * v + add for v, add in zip(self._sums, (1, x, y, x * x, x * y), strict=True)
        )
        self._sums = [n, sx, sy, sxx, sxy]
        mx, my = sx / n, sy / n
        var, cov = sxx / n - mx * mx, sxy / n - mx * my
        if n >= 5 and var > 100.0 and cov > 0:  # sizes spread enough to tell the slope from the intercept
            self.per_record_s = cov / var
        self.fixed_s = max(0.0, my - self.per_record_s * mx)

    def records_within(self, ms: float) -> int:
        """How many records a tick can handle and still end within `ms`."""
        return int((ms / 1000 - self.fixed_s) / self.per_record_s)

    def predict_ms(self, records: int) -> float:
        return 1000 * (self.fixed_s + records * self.per_record_s)

    def chunk(self, full: int, keep: float, least: int = 1) -> int:
        """The fewest records per tick (at least `least`) that still drain at `keep` of the rate of ticks of
        `full`: with fixed cost F and per-record cost c, n / (F + c n) >= keep * full / (F + c full)."""
        f, c = self.fixed_s, self.per_record_s
        n = keep * full * f / (f + (1 - keep) * full * c)
        return max(least, min(full, int(n) + 1))
