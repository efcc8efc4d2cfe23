"""The approximate-time synchronizer (xmod_ros.sync) has message_filters' semantics: checked on
hand-made cases and, on random streams, against a transcription of message_filters'
ApproximateTimeSynchronizer.add (ROS 2 message_filters/__init__.py); against the real one when
message_filters imports. Pure Python, no DDS."""
import itertools
import random
import threading
from types import SimpleNamespace

import pytest

from xmod_ros.sync import ApproximateTimeSynchronizer, Input, make_synchronizer, message_filters_available


def msg(t_ns: int, tag=None):
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=t_ns // 10**9, nanosec=t_ns % 10**9)), tag=tag)


MS = 10**6


class ReferenceATS:
    """message_filters.ApproximateTimeSynchronizer.add, transcribed with integer nanoseconds."""

    def __init__(self, n, queue_size, slop_ns):
        self.queues = [{} for _ in range(n)]
        self.queue_size, self.slop = queue_size, slop_ns
        self.out = []

    def add(self, m, my_queue_index):
        stamp = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
        my_queue = self.queues[my_queue_index]
        my_queue[stamp] = m
        while len(my_queue) > self.queue_size:
            del my_queue[min(my_queue)]
        search_queues = self.queues[:my_queue_index] + self.queues[my_queue_index + 1:]
        stamps = []
        for queue in search_queues:
            topic_stamps = []
            for s in queue:
                delta = abs(s - stamp)
                if delta > self.slop:
                    continue
                topic_stamps.append((s, delta))
            if not topic_stamps:
                return
            topic_stamps = sorted(topic_stamps, key=lambda x: x[1])
            stamps.append(topic_stamps)
        for vv in itertools.product(*[next(iter(zip(*s))) for s in stamps]):
            vv = list(vv)
            vv.insert(my_queue_index, stamp)
            qt = list(zip(self.queues, vv))
            if (max(vv) - min(vv)) < self.slop and len([1 for q, t in qt if t not in q]) == 0:
                self.out.append(tuple(q[t] for q, t in qt))
                for q, t in qt:
                    del q[t]
                break


def run(sync_cls_out, events):
    for m, i in events:
        sync_cls_out.add(m, i)


def test_pairs_each_message_with_the_closest_stamp():
    out = []
    s = ApproximateTimeSynchronizer(2, queue_size=5, slop=0.05)
    s.registerCallback(lambda a, b: out.append((a.tag, b.tag)))
    for t, tag in ((0, "c0"), (100, "c1"), (200, "c2")):
        s.add(msg(t * MS, tag), 1)                        # clouds first
    s.add(msg(95 * MS, "i1"), 0)                          # nearest cloud: 100 ms
    s.add(msg(260 * MS, "i_late"), 0)                     # 60 ms from c2 > slop: waits
    s.add(msg(205 * MS, "i2"), 0)
    assert out == [("i1", "c1"), ("i2", "c2")]
    assert s.pending() == [1, 1]                          # i_late and c0 are still queued
    s.add(msg(0, "i0"), 0)
    assert out[-1] == ("i0", "c0")


def test_slop_is_strict_on_the_spread():
    out = []
    s = ApproximateTimeSynchronizer(2, queue_size=5, slop=0.05)
    s.registerCallback(lambda a, b: out.append((a.tag, b.tag)))
    s.add(msg(0, "a"), 0)
    s.add(msg(50 * MS, "b"), 1)                           # spread == slop: not below it
    assert out == []
    s.add(msg(49 * MS, "c"), 1)
    assert out == [("a", "c")]


def test_queue_size_drops_the_oldest_and_counts_it():
    out = []
    s = ApproximateTimeSynchronizer(2, queue_size=2, slop=0.01)
    s.registerCallback(lambda a, b: out.append((a.tag, b.tag)))
    for k in range(4):
        s.add(msg(k * 100 * MS, f"i{k}"), 0)              # no cloud yet
    assert s.pending() == [2, 0] and s.dropped == [2, 0]
    s.add(msg(0, "c0"), 1)                                # its image was pushed out
    s.add(msg(300 * MS, "c3"), 1)
    assert out == [("i3", "c3")]


def test_three_inputs_and_callback_args():
    out = []
    s = ApproximateTimeSynchronizer(3, queue_size=5, slop=0.02)
    s.registerCallback(lambda a, b, c, extra: out.append((a.tag, b.tag, c.tag, extra)), "x")
    s.add(msg(100 * MS, "a"), 0)
    s.add(msg(110 * MS, "b"), 1)
    assert out == []
    s.add(msg(125 * MS, "c_far"), 2)                      # 25 ms from a: outside the slop
    s.add(msg(105 * MS, "c"), 2)
    assert out == [("a", "b", "c", "x")]


@pytest.mark.parametrize("seed", range(6))
def test_random_streams_match_message_filters_reference(seed):
    rnd = random.Random(seed)
    n = rnd.choice([2, 2, 3])
    queue_size, slop_ms = rnd.choice([1, 3, 5, 10]), rnd.choice([10, 30, 50, 100])
    events = []
    for i in range(n):
        t = rnd.randint(0, 20)
        for _ in range(60):
            t += rnd.randint(60, 140)                     # ~10 Hz with jitter
            if rnd.random() < 0.1:
                continue                                   # a lost message
            events.append((msg(t * MS, (i, t)), i))
    rnd.shuffle(events)                                    # arrival order != stamp order
    events.sort(key=lambda e: e[0].tag[1] + rnd.randint(0, 80))
    ref = ReferenceATS(n, queue_size, slop_ms * MS)
    ours, got = ApproximateTimeSynchronizer(n, queue_size, slop_ms / 1000), []
    ours.registerCallback(lambda *ms: got.append(tuple(m.tag for m in ms)))
    for m, i in events:
        ref.add(m, i)
        ours.add(m, i)
    assert got == [tuple(m.tag for m in ms) for ms in ref.out]
    assert len(got) > 0


def test_thread_safe_under_concurrent_inputs():
    s = ApproximateTimeSynchronizer(2, queue_size=1000, slop=0.005)
    got = []
    s.registerCallback(lambda a, b: got.append((a.tag, b.tag)))

    def feed(i):
        for k in range(500):
            Input(s, i)(msg(k * 100 * MS, k))

    threads = [threading.Thread(target=feed, args=(i,)) for i in (0, 1)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(a == b for a, b in got) and sorted(a for a, _ in got) == list(range(500))


def test_bad_arguments():
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(2, 0, 0.1)
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(2, 5, -1)


def test_against_message_filters():
    if not message_filters_available():
        pytest.skip("message_filters is not installed (full ROS 2 install only)")
    import message_filters
    rnd = random.Random(1)
    events, t = [], 0
    for _ in range(80):
        t += rnd.randint(60, 140)
        events.append((msg(t * MS, (0, t)), 0))
        events.append((msg((t + rnd.randint(-30, 30)) * MS, (1, t)), 1))
    f = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
    theirs, got_t = message_filters.ApproximateTimeSynchronizer(f, 5, 0.05), []
    theirs.registerCallback(lambda *ms: got_t.append(tuple(m.tag for m in ms)))
    ours, got_o = ApproximateTimeSynchronizer(2, 5, 0.05), []
    ours.registerCallback(lambda *ms: got_o.append(tuple(m.tag for m in ms)))
    for m, i in events:
        f[i].signalMessage(m)
        ours.add(m, i)
    assert got_o == got_t


def test_make_synchronizer_without_message_filters():
    class FakeNode:
        def __init__(self):
            self.subs = []

        def create_subscription(self, t, topic, cb, qos):
            self.subs.append((t, topic, cb))
            return topic

    node, got = FakeNode(), []
    sync, kind = make_synchronizer(node, [(int, "/a"), (float, "/b")], 5, 0.05, None, lambda a, b: got.append(a.tag),
                                   use_message_filters=False)
    assert kind == "xmod" and [s[1] for s in node.subs] == ["/a", "/b"]
    node.subs[0][2](msg(0, "x"))
    node.subs[1][2](msg(MS, "y"))
    assert got == ["x"]
