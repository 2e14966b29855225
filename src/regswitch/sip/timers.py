"""RFC 3261 §17 timer values (T1/T2/T4 and the derived A-M) and the one timer
structure the transaction layer keeps for all its transactions.

The queue is a set of FIFOs, one per delay. Every timer the layer sets is
`now + d` for a `d` taken from a small fixed set (64*T1, T4, 32 s, and the
retransmission intervals T1·2^k capped at T2), so each FIFO's deadlines are
appended in order and the earliest is always at its head: O(1) arm and fire,
no heap. Cancellation is lazy: a transaction remembers the deadline it
currently wants in a slot (`t_out` or `t_retx`); an entry whose deadline no
longer equals that slot is stale and is dropped when it reaches the head.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


@dataclass(frozen=True, slots=True)
class Timers:
    """T1 (RTT estimate), T2 (cap of non-INVITE/response retransmit interval),
    T4 (how long a message stays in the network), D (ACK-retransmit wait of an
    INVITE client over UDP, RFC 3261 says at least 32 s) — the rest derive.

    Values here are for unreliable transports; the layer uses zero for D, I, J
    and K on reliable ones (RFC 3261 Table 4).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2 or self.t4 <= 0 or self.d < 0:
            raise ValueError("timers need 0 < T1 <= T2, T4 > 0, D >= 0")

    @property
    def a(self) -> float:
        """INVITE request retransmit, initial interval (doubles, no cap)."""
        return self.t1

    @property
    def b(self) -> float:
        """INVITE client transaction timeout."""
        return 64 * self.t1

    @property
    def e(self) -> float:
        """Non-INVITE request retransmit, initial interval (doubles up to T2)."""
        return self.t1

    @property
    def f(self) -> float:
        """Non-INVITE client transaction timeout."""
        return 64 * self.t1

    @property
    def g(self) -> float:
        """INVITE final response retransmit, initial interval (doubles up to T2)."""
        return self.t1

    @property
    def h(self) -> float:
        """Wait time for ACK receipt."""
        return 64 * self.t1

    @property
    def i(self) -> float:
        """Wait time for ACK retransmissions (UDP)."""
        return self.t4

    @property
    def j(self) -> float:
        """Wait time for non-INVITE request retransmissions (UDP)."""
        return 64 * self.t1

    @property
    def k(self) -> float:
        """Wait time for non-INVITE response retransmissions (UDP)."""
        return self.t4

    @property
    def l(self) -> float:  # noqa: E743 - the RFC 6026 name
        """RFC 6026: INVITE server lingers in Accepted for 2xx ACKs and INVITE retransmissions."""
        return 64 * self.t1

    @property
    def m(self) -> float:
        """RFC 6026: INVITE client lingers in Accepted for 2xx retransmissions of other forks."""
        return 64 * self.t1


class Timed(Protocol):
    """What the queue needs of a transaction: the deadlines it currently wants
    (negative = none). `t_retx` is the retransmit timer (A, E, G),
    `t_out` the single running timeout/wait timer (B, D, F, H, I, J, K, L, M)."""

    t_out: float
    t_retx: float


T = TypeVar("T", bound=Timed)


class _Fifo(Generic[T]):
    """Deadlines of one delay, in order. Two parallel deques rather than one of
    tuples: the deadline float is the very object the transaction holds, so an
    entry costs two pointers (it matters with ~600k lingering transactions)."""

    __slots__ = ("retx", "times", "txs")

    def __init__(self, retx: bool) -> None:
        self.retx = retx
        self.times: deque[float] = deque()
        self.txs: deque[T] = deque()


class TimerQueue(Generic[T]):
    """All timers of a transaction layer, with lazy cancellation.

    The earliest live deadline is cached with the FIFO holding it, so the
    endpoint can ask `next_deadline()` after every datagram for O(1): arming
    can only lower it, and a cancelled or fired head is noticed because that
    FIFO's head no longer matches.
    """

    __slots__ = ("_best", "_best_fifo", "_fifos", "_out", "_retx")

    def __init__(self) -> None:
        self._out: dict[float, _Fifo[T]] = {}
        self._retx: dict[float, _Fifo[T]] = {}
        self._fifos: list[_Fifo[T]] = []
        self._best: float | None = None  # cached earliest deadline; None: unknown
        self._best_fifo: _Fifo[T] | None = None

    def _fifo(self, table: dict[float, _Fifo[T]], delay: float, retx: bool) -> _Fifo[T]:
        fifo = table.get(delay)
        if fifo is None:
            fifo = table[delay] = _Fifo[T](retx)
            self._fifos.append(fifo)
        return fifo

    def arm_out(self, tx: T, now: float, delay: float) -> None:
        """(Re)start `tx`'s timeout/wait timer; any earlier one is cancelled."""
        fifo = self._out.get(delay) or self._fifo(self._out, delay, False)
        deadline = now + delay
        tx.t_out = deadline
        fifo.times.append(deadline)
        fifo.txs.append(tx)
        if self._best is not None and deadline < self._best:
            self._best = deadline
            self._best_fifo = fifo

    def arm_retx(self, tx: T, now: float, delay: float) -> None:
        """(Re)start `tx`'s retransmit timer; any earlier one is cancelled."""
        fifo = self._retx.get(delay) or self._fifo(self._retx, delay, True)
        deadline = now + delay
        tx.t_retx = deadline
        fifo.times.append(deadline)
        fifo.txs.append(tx)
        if self._best is not None and deadline < self._best:
            self._best = deadline
            self._best_fifo = fifo

    def pop_due(self, now: float) -> tuple[list[T], list[T]]:
        """Every live timer due at `now`, disarmed: (retransmit, timeout) lists.

        Order is per delay, not global: timers of different transactions are
        independent, and a transaction's own retransmit and timeout timers due
        at the same instant may fire in either order.
        """
        retx_due: list[T] = []
        out_due: list[T] = []
        for fifo in self._fifos:
            times = fifo.times
            if not times or times[0] > now:
                continue
            self._best = None
            txs = fifo.txs
            if fifo.retx:
                while times and times[0] <= now:
                    deadline = times.popleft()
                    tx = txs.popleft()
                    if tx.t_retx == deadline:
                        tx.t_retx = -1.0
                        retx_due.append(tx)
            else:
                while times and times[0] <= now:
                    deadline = times.popleft()
                    tx = txs.popleft()
                    if tx.t_out == deadline:
                        tx.t_out = -1.0
                        out_due.append(tx)
        return retx_due, out_due

    def next_deadline(self) -> float | None:
        """The earliest live deadline."""
        best = self._best
        fifo = self._best_fifo
        if best is not None and fifo is not None:
            times = fifo.times
            if times and times[0] == best:
                tx = fifo.txs[0]
                if (tx.t_retx if fifo.retx else tx.t_out) == best:
                    return best
        return self._scan()

    def _scan(self) -> float | None:
        """Recompute the earliest live deadline, dropping stale heads."""
        best: float | None = None
        best_fifo: _Fifo[T] | None = None
        for fifo in self._fifos:
            times = fifo.times
            txs = fifo.txs
            retx = fifo.retx
            while times:
                deadline = times[0]
                tx = txs[0]
                if (tx.t_retx if retx else tx.t_out) == deadline:
                    if best is None or deadline < best:
                        best = deadline
                        best_fifo = fifo
                    break
                times.popleft()
                txs.popleft()
        self._best = best
        self._best_fifo = best_fifo
        return best

    def __len__(self) -> int:
        """Entries held, stale ones included (for tests and metrics)."""
        return sum(len(f.times) for f in self._fifos)
