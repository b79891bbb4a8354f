"""Overlays: ordered prefix scans merged over a base, deletions, layering, and the result codes
that keep a transaction's writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.app.state import EmptyState, FuncReader, Overlay, prefix_end
from storage.kv import MemoryStore, WriteBatch


def base_of(data: dict[bytes, bytes]) -> tuple[MemoryStore, FuncReader]:
    kv = MemoryStore()
    batch = WriteBatch()
    for k, v in data.items():
        batch.put(k, v)
    kv.write(batch)
    return kv, FuncReader(kv.get, kv.iterate)


def test_items_merges_writes_and_hides_deletions():
    _, base = base_of({b"a/1": b"x", b"a/3": b"y", b"a/5": b"z", b"b/1": b"w"})
    top = Overlay(base)
    top.put(b"a/2", b"new")
    top.delete(b"a/3")
    top.put(b"a/5", b"changed")
    top.put(b"a/6", b"tail")
    top.put(b"c", b"other")
    assert list(top.items(b"a/")) == [(b"a/1", b"x"), (b"a/2", b"new"), (b"a/5", b"changed"), (b"a/6", b"tail")]
    assert list(top.items(b"b/")) == [(b"b/1", b"w")]
    assert list(top.items(b"zz")) == []


def test_items_through_two_layers_and_after_merge():
    _, base = base_of({b"k1": b"1", b"k2": b"2"})
    block = Overlay(base)
    block.delete(b"k1")
    tx = Overlay(block)
    tx.put(b"k1", b"back")
    tx.put(b"k0", b"0")
    assert list(tx.items(b"k")) == [(b"k0", b"0"), (b"k1", b"back"), (b"k2", b"2")]
    assert list(block.items(b"k")) == [(b"k2", b"2")]
    tx.merge_into(block)
    assert list(block.items(b"k")) == [(b"k0", b"0"), (b"k1", b"back"), (b"k2", b"2")]
    assert block.sorted_writes() == [(b"k0", b"0"), (b"k1", b"back")]


def test_items_after_many_writes_folds_the_fresh_keys():
    top = Overlay(EmptyState())
    keys = [bytes([i % 7, i % 251, i % 13]) for i in range(2000)]
    for i, k in enumerate(keys):
        top.put(b"p" + k, i.to_bytes(2, "big"))
        if i % 97 == 0:
            assert [k for k, _ in top.items(b"p")] == sorted({b"p" + x for x in keys[: i + 1]})
    assert [k for k, _ in top.items(b"p\x03")] == sorted({b"p" + x for x in keys if x[0] == 3})


def test_reader_without_items_says_how_to_build_one():
    reader = FuncReader({}.get)
    top = Overlay(reader)
    try:
        list(top.items(b"x"))
    except TypeError as exc:
        assert "state_items" in str(exc)
    else:
        raise AssertionError("expected TypeError")


def test_reader_from_a_chain_store_finds_its_ordered_scan():
    from storage.chain import ChainStore

    store = ChainStore(MemoryStore())
    store.init_genesis(b"g" * 32, [(b"x/1", b"a"), (b"x/2", b"b"), (b"y", b"c")], b"r" * 32)
    for reader in (FuncReader(store.state_get, store.state_items), FuncReader(store.state_get)):
        assert list(Overlay(reader).items(b"x/")) == [(b"x/1", b"a"), (b"x/2", b"b")]


def test_prefix_end():
    assert prefix_end(b"a/") == b"a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None


KEYS = st.binary(min_size=1, max_size=3).map(lambda b: bytes(x % 4 for x in b))
OPS = st.lists(st.tuples(st.sampled_from(["put", "del", "merge", "scan"]), KEYS, st.binary(max_size=2)), max_size=60)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.dictionaries(KEYS, st.binary(max_size=2), max_size=20), OPS, KEYS.map(lambda k: k[:1]))
def test_layered_scans_match_a_model(initial, ops, scan_prefix):
    _, base = base_of(initial)
    block = Overlay(base)
    tx = Overlay(block)
    model_block = dict(initial)
    model_tx = dict(initial)
    for op, key, value in ops:
        if op == "put":
            tx.put(key, value)
            model_tx[key] = value
        elif op == "del":
            tx.delete(key)
            model_tx.pop(key, None)
        elif op == "merge":
            tx.merge_into(block)
            model_block = dict(model_tx)
            tx = Overlay(block)
        else:
            assert list(block.items(key[:1])) == sorted((k, v) for k, v in model_block.items() if k.startswith(key[:1]))
        assert list(tx.items(scan_prefix)) == sorted((k, v) for k, v in model_tx.items() if k.startswith(scan_prefix))
