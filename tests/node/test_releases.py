"""A DP node's journal of released updates (learningchain/node/releases.py): a
torn last line (a crash mid-write) is cut and ignored, a corrupt one refused, and
the next release is never glued onto a fragment."""
import pytest

from learningchain.core.errors import ConfigError
from learningchain.node.releases import RELEASES_FILE, ReleaseLog
from tests.learning.test_privacy import dp_update


def test_release_journal_ignores_a_torn_last_line_and_refuses_a_corrupt_one(tmp_path):
    _, a = dp_update(False)
    _, b = dp_update(False)
    log = ReleaseLog(tmp_path)
    log.record(a)
    log.record(b)
    assert ReleaseLog(tmp_path).ids == {a.id, b.id} and ReleaseLog(tmp_path).find(3, a.base).id == b.id
    path = tmp_path / RELEASES_FILE
    whole = path.read_text()
    path.write_text(whole[:-40])  # a crash while writing b: b never left the node
    assert ReleaseLog(tmp_path).ids == {a.id}
    path.write_text("{not json\n" + whole)
    with pytest.raises(ConfigError, match="line 1 is not an update tx"):
        ReleaseLog(tmp_path)


def test_release_journal_cuts_a_torn_line_so_the_next_release_is_not_lost(tmp_path):
    """After a crash mid-write, the next tx must not be glued onto the fragment:
    it would vanish at the following start (an uncounted release, maybe trained
    again with fresh noise) and one more record would make start-up fail."""
    (_, a), (_, b), (_, c), (_, d) = (dp_update(False) for _ in range(4))
    log = ReleaseLog(tmp_path)
    log.record(a)
    log.record(b)
    path = tmp_path / RELEASES_FILE
    path.write_bytes(path.read_bytes()[:-40])  # a crash while writing b
    restarted = ReleaseLog(tmp_path)
    assert restarted.ids == {a.id} and len(restarted) == 1
    assert path.read_bytes() == a.serialize() + b"\n"  # the fragment is gone from disk
    restarted.record(c)
    again = ReleaseLog(tmp_path)
    assert again.ids == {a.id, c.id} and len(again) == 2
    assert again.find(3, c.base).serialize() == c.serialize()  # the last one for the round, read from disk
    with open(path, "ab") as fh:  # a write that failed half-way (disk full) leaves a fragment behind
        fh.write(d.serialize()[:100])
    again.record(d)
    last = ReleaseLog(tmp_path)
    assert last.ids == {a.id, c.id, d.id} and len(last) == 3
    assert path.read_bytes() == b"".join(t.serialize() + b"\n" for t in (a, c, d))
    assert last.find(3, a.base).id == d.id and last.find(4, a.base) is None
