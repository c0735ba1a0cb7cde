"""The block a channel's chain figures were read at (its anchor) is stored with them, in the same
write, survives a restart, is kept by later writes that do not set it (also group-committed ones),
and is cleared only if it is still the one the watcher checked (docs/security.md, "Reorganisations").
Databases of schema 3 gain the columns empty."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

from channel_node.store import BlockRef, ChannelWrite, Charge, SQLiteStore
from test_store import PIN, channel, store  # noqa: F401  (the same memory and SQLite stores)

A = BlockRef(7, b"\xaa" * 32)
B = BlockRef(9, b"\xbb" * 32)


async def test_an_anchor_is_written_with_the_figures_and_kept_by_writes_that_do_not_set_it(store):
    state = channel(1)
    await store.commit(ChannelWrite(state, 0, anchor=A))
    assert (await store.load_channel(state.channel_id)).anchor == A
    # Many plain writes at once (SQLite's bulk path) leave it alone.
    others = [channel(n) for n in range(2, 6)]
    for other in others:
        await store.commit(ChannelWrite(other, 0))
    charge = Charge("/a", 10, None, True, 1)
    await asyncio.gather(
        store.commit(ChannelWrite(replace(state, ceiling=10, charged=10), 1, charge)),
        *(store.commit(ChannelWrite(replace(o, ceiling=1), 1)) for o in others),
    )
    loaded = await store.load_channel(state.channel_id)
    assert loaded.anchor == A and loaded.state.charged == 10
    assert await store.anchored_channels() == [(state.channel_id, A)]
    await store.commit(ChannelWrite(loaded.state, 2, anchor=B))
    assert (await store.load_channel(state.channel_id)).anchor == B


async def test_an_anchor_is_cleared_only_if_it_is_still_the_checked_one(store):
    state = channel(1)
    await store.commit(ChannelWrite(state, 0, anchor=A))
    await store.commit(ChannelWrite(state, 1, anchor=B))  # a newer read replaced it meanwhile
    assert not await store.clear_anchor(state.channel_id, A)
    assert (await store.load_channel(state.channel_id)).anchor == B
    assert await store.clear_anchor(state.channel_id, B)
    loaded = await store.load_channel(state.channel_id)
    assert loaded.anchor is None and loaded.version == 2, "clearing changes neither figures nor version"
    assert await store.anchored_channels() == []
    assert not await store.clear_anchor(b"\x09" * 32, A)


async def test_anchors_survive_a_restart_and_old_databases_migrate(tmp_path):
    path = tmp_path / "node.db"
    old = sqlite3.connect(path)
    from channel_node.store.sqlite import _statements, migrations

    for number, sql in migrations():
        if number <= 3:
            for statement in _statements(sql):
                old.execute(statement)
    old.execute("PRAGMA user_version=3")
    state = channel(1)
    c = state.config
    old.execute(
        "INSERT INTO channels (channel_id, payer, signer, receiver, token, close_delay, salt, deposited, claimed, "
        "ceiling, signature, charged, close_deadline, settled, version, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, '1000', '0', '0', x'', '0', NULL, 0, 1, 0)",
        (state.channel_id, c.payer, c.signer, c.receiver, c.token, c.close_delay, str(c.salt)),
    )
    old.commit()
    old.close()
    store = SQLiteStore(path)
    await store.open(PIN)
    loaded = await store.load_channel(state.channel_id)
    assert loaded.state.deposited == 1000 and loaded.anchor is None
    await store.commit(ChannelWrite(loaded.state, 1, anchor=A))
    await store.close()
    store = SQLiteStore(path)
    await store.open(PIN)
    assert (await store.load_channel(state.channel_id)).anchor == A
    assert await store.anchored_channels() == [(state.channel_id, A)]
    await store.close()
