"""Approximate-time synchronizer with the semantics of ``message_filters.ApproximateTimeSynchronizer``
(the Python implementation of ROS 2 message_filters), in pure Python and testable without ROS.

For each input a queue keyed by header stamp (nanoseconds) keeps at most ``queue_size`` messages
(the oldest stamp goes first; a message with the same stamp replaces the queued one). When a
message arrives, every other queue's stamps within ``slop`` of it are sorted by their distance
to it; the combinations are tried in that order (``itertools.product``) and the first whose
spread (newest - oldest stamp) is below ``slop`` is emitted and its messages leave the queues:
the new message is paired with the closest stamps. Unpaired messages stay queued until pushed
out; those are counted (``dropped``), which message_filters does not do.

Use :func:`make_synchronizer` in a node: it returns message_filters' synchronizer when
message_filters imports (a full ROS 2 install) and this one otherwise, with the same
``registerCallback`` interface fed through :class:`Input` objects.
"""
from __future__ import annotations

import itertools
import threading
from typing import Callable


def stamp_ns(msg) -> int:
    """Header stamp of a message in integer nanoseconds."""
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


class ApproximateTimeSynchronizer:
    """message_filters semantics over ``n_inputs`` inputs; feed with ``add(msg, index)``.

    ``slop`` in seconds. Callbacks registered with ``registerCallback(cb, *args)`` receive the
    matched messages in input order, then ``args``. Thread-safe; callbacks run outside the lock.
    """

    def __init__(self, n_inputs: int, queue_size: int, slop: float, stamp: Callable = stamp_ns):
        if n_inputs < 1:
            raise ValueError("a synchronizer needs at least one input")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 s, got {slop}")
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(float(slop) * 1e9))
        self.queues: list[dict[int, object]] = [{} for _ in range(n_inputs)]
        self.callbacks: list[tuple[Callable, tuple]] = []
        self.stamp = stamp
        self.lock = threading.Lock()
        self.dropped = [0] * n_inputs      # messages that left a queue without being paired
        self.matched = 0

    def registerCallback(self, cb: Callable, *args) -> None:  # noqa: N802 - message_filters' name
        self.callbacks.append((cb, args))

    def reset(self) -> None:
        """Forget every queued message (e.g. when time jumps back)."""
        with self.lock:
            for i, q in enumerate(self.queues):
                self.dropped[i] += len(q)
                q.clear()

    def pending(self) -> list[int]:
        with self.lock:
            return [len(q) for q in self.queues]

    def add(self, msg, index: int) -> None:
        t = self.stamp(msg)
        out = None
        with self.lock:
            my = self.queues[index]
            if t in my:
                self.dropped[index] += 1            # replaced by a message with the same stamp
            my[t] = msg
            while len(my) > self.queue_size:
                del my[min(my)]
                self.dropped[index] += 1
            others = [i for i in range(len(self.queues)) if i != index]
            candidates = []
            for i in others:
                near = sorted(((abs(s - t), s) for s in self.queues[i] if abs(s - t) <= self.slop_ns))
                if not near:
                    break
                candidates.append([s for _, s in near])
            else:
                for combo in itertools.product(*candidates):
                    stamps = list(combo)
                    stamps.insert(index, t)
                    if max(stamps) - min(stamps) < self.slop_ns or (self.slop_ns == 0 and max(stamps) == min(stamps)):
                        out = [self.queues[i].pop(s) for i, s in enumerate(stamps)]
                        self.matched += 1
                        break
        if out is not None:
            for cb, args in self.callbacks:
                cb(*out, *args)


class Input:
    """One input of the pure-Python synchronizer: call it with a message (e.g. as an rclpy
    subscription callback)."""

    def __init__(self, sync: ApproximateTimeSynchronizer, index: int):
        self.sync, self.index = sync, index

    def __call__(self, msg) -> None:
        self.sync.add(msg, self.index)


def message_filters_available() -> bool:
    try:
        import message_filters  # noqa: F401
        return hasattr(message_filters, "ApproximateTimeSynchronizer") and hasattr(message_filters, "Subscriber")
    except Exception:  # noqa: BLE001
        return False


def make_synchronizer(node, specs, queue_size: int, slop: float, qos, callback, use_message_filters=None):
    """Subscribe to ``specs`` [(msg_type, topic), ...] and call ``callback(*msgs)`` with
    approximately synchronised messages. Returns (synchronizer, kind) with kind
    'message_filters' or 'xmod'. The pure-Python one is also returned so a node can read its
    ``dropped`` counters."""
    if use_message_filters is None:
        use_message_filters = message_filters_available()
    if use_message_filters:
        import message_filters
        subs = [message_filters.Subscriber(node, t, topic, qos_profile=qos) for t, topic in specs]
        sync = message_filters.ApproximateTimeSynchronizer(subs, queue_size, slop)
        sync.registerCallback(callback)
        sync._xmod_subscribers = subs            # keep them alive with the synchronizer
        return sync, "message_filters"
    sync = ApproximateTimeSynchronizer(len(specs), queue_size, slop)
    sync.registerCallback(callback)
    sync.subscriptions = [node.create_subscription(t, topic, Input(sync, i), qos) for i, (t, topic) in enumerate(specs)]
    return sync, "xmod"
