"""kvtier.sglang_backend.KvtierHiCacheStorage driven like SGLang's HiCache controller.

SGLang is not installed here: a host pool stands in for its HostKVCache (page-first, one
contiguous region per page, or without get_page_buffer_meta to take the page-copy path), and
keys are SGLang-style chained hex page hashes.
"""

from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("KVTIER_NO_SGLANG", "1")
from kvtier.sglang_backend import KvtierHiCacheStorage  # noqa: E402

PAGE_TOKENS, BYTES_PER_TOKEN, POOL_PAGES = 4, 256, 32


class HostPool:
    """HostKVCache stand-in: kv_buffer [pages, page_bytes]; host indices are token indices."""

    def __init__(self, zero_copy: bool):
        self.page_size = PAGE_TOKENS
        self.buf = np.zeros((POOL_PAGES, PAGE_TOKENS * BYTES_PER_TOKEN), np.uint8)
        if zero_copy:
            self.get_page_buffer_meta = self._meta

    def get_size_per_token(self):
        return BYTES_PER_TOKEN

    def get_data_page(self, index, flat=True):
        return self.buf[index // PAGE_TOKENS].copy()

    def set_from_flat_data_page(self, index, data):
        self.buf[index // PAGE_TOKENS] = np.frombuffer(data, np.uint8)

    def _meta(self, host_indices):
        pages = [int(host_indices[i]) // PAGE_TOKENS for i in range(0, len(host_indices),
                                                                    PAGE_TOKENS)]
        return [self.buf[p].ctypes.data for p in pages], [self.buf.shape[1]] * len(pages)

    def indices(self, pages):
        return np.array([p * PAGE_TOKENS + t for p in pages for t in range(PAGE_TOKENS)])


def page_keys(tokens, prefix=""):
    keys, parent = [], prefix
    for i in range(0, len(tokens) - len(tokens) % PAGE_TOKENS, PAGE_TOKENS):
        parent = hashlib.sha256((parent + repr(tokens[i:i + PAGE_TOKENS])).encode()).hexdigest()
        keys.append(parent)
    return keys


def storage_config(socket, model, tp_rank=0, tp_size=1, mla=False):
    return SimpleNamespace(tp_rank=tp_rank, tp_size=tp_size, pp_rank=0, pp_size=1,
                           is_mla_model=mla, model_name=model, extra_config={"socket": socket})


@pytest.mark.parametrize("zero_copy", [True, False])
def test_v1_round_trip_through_host_pool(daemon, zero_copy):
    store = KvtierHiCacheStorage(storage_config(daemon.socket, f"sgl/v1-{zero_copy}"))
    pool = HostPool(zero_copy)
    store.register_mem_pool_host(pool)
    keys = page_keys(list(range(40)))  # 10 pages
    assert store.batch_exists(keys) == 0
    rng = np.random.default_rng(1)
    pool.buf[:10] = rng.integers(0, 256, pool.buf[:10].shape, dtype=np.uint8)
    expect = pool.buf[:10].copy()
    assert store.batch_set_v1(keys[:6], pool.indices(range(6))) == [True] * 6
    assert store.batch_exists(keys) == 6
    assert store.exists(keys[0]) and not store.exists(keys[7])
    # Load into other pages of the pool.
    dst = list(range(20, 30))
    got = store.batch_get_v1(keys, pool.indices(dst))
    assert got == [True] * 6 + [False] * 4
    np.testing.assert_array_equal(pool.buf[20:26], expect[:6])
    assert not pool.buf[26:30].any()


def test_buffer_get_set_and_namespaces(daemon):
    store = KvtierHiCacheStorage(storage_config(daemon.socket, "sgl/buffers"))
    keys = page_keys(list(range(100, 116)))
    values = [np.full(1024, i, np.uint8) for i in range(len(keys))]
    assert store.batch_get(keys) == [None] * 4  # nothing stored, no namespace yet
    assert store.batch_set(keys[:3], values[:3])
    assert store.set(keys[3], values[3])
    out = store.batch_get(keys)
    assert all(np.array_equal(o, v) for o, v in zip(out, values))
    target = np.zeros(1024, np.uint8)
    assert store.get(keys[2], target) is target and (target == 2).all()
    assert not store.batch_set(keys[:1], [np.zeros(10, np.uint8)])  # wrong page size: False
    # Another TP rank is another namespace; an MLA model shares one across ranks.
    rank1 = KvtierHiCacheStorage(storage_config(daemon.socket, "sgl/buffers", 1, 2))
    rank1.batch_set(keys[:1], values[:1])
    assert KvtierHiCacheStorage(storage_config(daemon.socket, "sgl/buffers", 0, 2)).batch_set(
        keys[:1], values[:1])
    mla0 = KvtierHiCacheStorage(storage_config(daemon.socket, "sgl/mla", 0, 2, mla=True))
    mla1 = KvtierHiCacheStorage(storage_config(daemon.socket, "sgl/mla", 1, 2, mla=True))
    assert mla0.batch_set(keys, values)
    mla1.batch_set(keys[:1], values[:1])  # sets the page size of this instance
    assert mla1.batch_exists(keys) == 4
    store.clear()
    assert store.batch_exists(keys) == 0
    assert "tiers" in store.get_stats()
