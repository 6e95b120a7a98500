"""kvtier.Client, Namespace and PrefixHasher against a real kvtierd."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import kvtier

LAYOUT = dict(model="py/test-model", num_layers=2, kv_heads=2, head_size=32, dtype="fp16",
              tokens_per_block=16)


@pytest.fixture(scope="module")
def ns(client):
    return client.register_namespace(**LAYOUT)


def random_blocks(n: int, block_bytes: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, block_bytes, dtype=np.uint8) for _ in range(n)]


def test_import_and_namespace(client, ns):
    assert ns.block_bytes == 2 * 2 * 16 * 2 * 32 * 2
    assert ns.id != 0
    assert ns.tokens_per_block == 16
    # Registering again is idempotent; another TP rank is another namespace.
    assert client.register_namespace(**LAYOUT) == ns
    other = client.register_namespace(**LAYOUT, tp_rank=1, tp_size=2)
    assert other.id != ns.id


def test_round_trip_numpy(client, ns):
    tokens = list(range(100, 100 + 16 * 5 + 3))  # 5 full blocks and a partial one
    keys = kvtier.PrefixHasher(ns).hash(tokens)
    assert len(keys) == 5 and all(isinstance(k, bytes) and len(k) == 16 for k in keys)
    assert client.lookup(ns, keys) == 0

    blocks = random_blocks(5, ns.block_bytes, seed=1)
    assert client.save(ns, keys, blocks) == 5
    assert client.lookup(ns, keys) == 5
    assert client.lookup_tiers(ns, keys) == ["dram"] * 5
    assert client.save(ns, keys, blocks) == 0  # already cached: skipped

    out = [np.zeros(ns.block_bytes, np.uint8) for _ in keys]
    assert client.load(ns, keys, out) == 5
    for a, b in zip(blocks, out):
        np.testing.assert_array_equal(a, b)

    # One 2-D buffer for all blocks, and bytearrays.
    whole = np.zeros((5, ns.block_bytes), np.uint8)
    assert client.load(ns, keys, whole) == 5
    np.testing.assert_array_equal(whole, np.stack(blocks))
    arrays = [bytearray(ns.block_bytes) for _ in keys]
    assert client.load(ns, keys, arrays) == 5
    assert bytes(arrays[2]) == blocks[2].tobytes()


def test_lookup_counts_leading_prefix(client, ns):
    hasher = kvtier.PrefixHasher(ns)
    keys = hasher.hash(np.arange(5000, 5000 + 16 * 6, dtype=np.int32))
    blocks = random_blocks(6, ns.block_bytes, seed=2)
    client.save(ns, keys[:3], blocks[:3])
    assert client.lookup(ns, keys) == 3
    assert client.lookup(ns.id, keys[:2]) == 2  # an int id works for lookups
    # A hole: the tail is present but the prefix stops at the first missing key.
    client.save(ns, keys[4:], blocks[4:], parent=keys[3])
    assert client.lookup(ns, keys) == 3
    out = [np.zeros(ns.block_bytes, np.uint8) for _ in keys]
    assert client.load(ns, keys, out) == 3
    np.testing.assert_array_equal(out[2], blocks[2])
    assert not out[3].any()  # untouched past the prefix
    assert client.prefetch(ns, keys) == 3


def test_ptrs_round_trip(client, ns):
    keys = kvtier.PrefixHasher(ns).hash(list(range(7, 7 + 32)))
    blocks = random_blocks(2, ns.block_bytes, seed=3)
    assert client.save_ptrs(ns, keys, [b.ctypes.data for b in blocks]) == 2
    out = [np.zeros(ns.block_bytes, np.uint8) for _ in keys]
    assert client.load_ptrs(ns, keys, [o.ctypes.data for o in out]) == 2
    np.testing.assert_array_equal(out[1], blocks[1])


def test_hasher_chains_and_is_deterministic(ns):
    h = kvtier.PrefixHasher(ns)
    tokens = list(range(16 * 4))
    keys = h.hash(tokens)
    assert keys == h.hash(np.array(tokens, dtype=np.int32))  # list and int32 array agree
    assert len(set(keys)) == 4
    # Chaining: hashing the tail from the previous block's key gives the same keys.
    assert h.hash(tokens[32:], parent=keys[1]) == keys[2:]
    # A different first block changes every later key.
    changed = h.hash([1] + tokens[1:])
    assert all(a != b for a, b in zip(changed, keys))
    # extra (salt) distinguishes the chain; the namespace seeds the keys.
    assert h.hash(tokens, extra=b"salt")[0] != keys[0]
    assert kvtier.PrefixHasher(kvtier.Namespace(ns.id + 1, ns.block_bytes), 16).hash(tokens) != keys
    assert h.hash(tokens[:15]) == []
    e = h.from_engine_hash(b"vllm-block-hash")
    assert len(e) == 16 and e == h.from_engine_hash(b"vllm-block-hash")
    assert h.from_engine_hashes([b"a", b"vllm-block-hash"])[1] == e


_C_HASH = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
ns_id, tpb, tokens = int(sys.argv[2]), int(sys.argv[3]), [int(t) for t in sys.argv[4:]]
arr = (ctypes.c_int32 * len(tokens))(*tokens)
out = (ctypes.c_uint64 * (2 * len(tokens)))()
n = ctypes.c_size_t()
rc = lib.kvtier_hash_tokens(ctypes.c_uint64(ns_id), ctypes.c_uint32(tpb), arr,
                            ctypes.c_size_t(len(tokens)), None, out,
                            ctypes.c_size_t(len(tokens)), ctypes.byref(n))
assert rc == 0, rc
for i in range(n.value):
    print((out[2 * i].to_bytes(8, "little") + out[2 * i + 1].to_bytes(8, "little")).hex())
"""


def test_hasher_matches_c_api(ns):
    """The binding's keys equal libkvtier_c's kvtier_hash_tokens (another build of the hasher).

    In a subprocess: libkvtier_c and the binding each carry the generated proto code, which may
    be registered only once per process.
    """
    kvtierd = os.environ.get("KVTIER_KVTIERD")
    lib = pathlib.Path(kvtierd).resolve().parents[1] / "lib" / "libkvtier_c.so" if kvtierd else None
    if lib is None or not lib.exists():
        pytest.skip("libkvtier_c.so not found")
    tokens = [int(t) for t in np.arange(900, 900 + 16 * 3 + 5)]
    out = subprocess.run([sys.executable, "-c", _C_HASH, str(lib), str(ns.id), "16",
                          *map(str, tokens)], check=True, capture_output=True, text=True)
    c_keys = [bytes.fromhex(line) for line in out.stdout.split()]
    assert len(c_keys) == 3
    assert kvtier.PrefixHasher(ns).hash(tokens) == c_keys


def test_errors_carry_code_and_message(client, ns):
    keys = kvtier.PrefixHasher(ns).hash(list(range(16)))
    bogus = kvtier.Namespace(id=0x1234, block_bytes=ns.block_bytes)
    with pytest.raises(kvtier.NotFoundError) as e:
        client.save(bogus, keys, [np.zeros(ns.block_bytes, np.uint8)])
    assert e.value.code == 5 and e.value.code_name == "NOT_FOUND"
    assert "namespace_id" in e.value.message
    assert isinstance(e.value, kvtier.Error)
    with pytest.raises(kvtier.NotFoundError):
        client.lookup(0x1234, keys)

    with pytest.raises(kvtier.InvalidArgumentError) as e:
        client.register_namespace(model="m", num_layers=1, kv_heads=1, head_size=8, dtype="fp13",
                                  tokens_per_block=16)
    assert e.value.code == 3 and "layout.dtype" in e.value.message
    assert isinstance(e.value, ValueError)

    # Wrong buffer size, count and writability are caught before any call.
    with pytest.raises(ValueError, match="expected 4096|bytes, expected"):
        client.save(ns, keys, [np.zeros(10, np.uint8)])
    with pytest.raises(ValueError, match="1 keys"):
        client.save(ns, keys, [])
    with pytest.raises(TypeError, match="writable"):
        client.load(ns, keys, [bytes(ns.block_bytes)])
    with pytest.raises(ValueError, match="16 bytes"):
        client.lookup(ns, [b"short"])


def test_no_daemon_is_unavailable(tmp_path):
    with pytest.raises(kvtier.UnavailableError) as e:
        kvtier.Client(str(tmp_path / "none.sock"), timeout_ms=500)
    assert e.value.code == 14 and "no kvtierd" in e.value.message
    assert isinstance(e.value, ConnectionError)


def test_socket_from_environment(daemon, monkeypatch):
    monkeypatch.setenv("KVTIER_SOCKET", daemon.socket)
    assert kvtier.Client().socket_path == daemon.socket


def test_stats_and_cluster(client, ns):
    stats = client.stats()
    assert stats["lookups"] > 0 and stats["namespaces"] >= 1
    dram = [t for t in stats["tiers"] if t["name"] == "dram"][0]
    assert dram["capacity_bytes"] == 64 << 20 and dram["blocks"] > 0
    cluster = client.cluster()
    assert cluster["enabled"] is False


def test_gil_released_during_calls(client, ns):
    """Another Python thread runs while this one is inside save/load.

    With a long switch interval a thread holding the GIL is not preempted during these few
    milliseconds, so the spinner can only advance inside our calls if they release the GIL.
    """
    n = 64
    keys = kvtier.PrefixHasher(ns).hash(np.arange(70000, 70000 + 16 * n, dtype=np.int32))
    blocks = np.random.default_rng(4).integers(0, 256, (n, ns.block_bytes), dtype=np.uint8)
    out = np.zeros_like(blocks)
    ticks = 0
    stop = threading.Event()

    def spin():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    t = threading.Thread(target=spin)
    t.start()
    try:
        in_calls = 0
        for _ in range(20):  # a loaded machine may not schedule the spinner in every call
            before = ticks
            client.save(ns, keys, blocks)
            client.load(ns, keys, out)
            client.drop_all(ns)
            in_calls += ticks - before
            if in_calls:
                break
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old_interval)
    np.testing.assert_array_equal(out, blocks)
    assert in_calls > 0


def test_gpu_kv_cpu_backend_round_trip(client):
    """GpuKv (save_kv/load_kv by pointers + layout) with host arrays and the cpu backend."""
    layers, nblocks, bs, heads, hd = 3, 8, 16, 2, 32
    ns = client.register_namespace(model="py/gpu-kv", num_layers=layers, kv_heads=heads,
                                   head_size=hd, dtype="fp16", tokens_per_block=bs)
    rng = np.random.default_rng(5)
    src = [rng.standard_normal((2, nblocks, bs, heads, hd)).astype(np.float16)
           for _ in range(layers)]
    dst = [np.zeros_like(a) for a in src]
    gkv = kvtier.GpuKv(client, "cpu")
    assert gkv.backend == "cpu"

    def paged(arrays, block_ids):
        p = kvtier.PagedKV()
        p.layout = "flash"
        p.layer_bases = [a.ctypes.data for a in arrays]
        p.num_layers, p.num_blocks, p.block_size = layers, nblocks, bs
        p.kv_heads, p.head_size, p.element_bytes = heads, hd, 2
        p.fill_compact_strides()
        p.block_ids = block_ids
        return p

    keys = kvtier.PrefixHasher(ns).hash(list(range(16 * 3)))
    p = paged(src, [5, 1, 6])
    assert p.staging_block_bytes() == ns.block_bytes
    t = gkv.save_kv(ns, keys, p)
    t.wait()
    assert t.results() == ["done"] * 3
    t = gkv.load_kv(ns, keys + kvtier.PrefixHasher(ns).hash(list(range(900, 916))),
                    paged(dst, [0, 2, 3, 4]))
    for layer in range(layers):
        t.wait_layer(layer)
    t.wait()
    assert t.results() == ["done", "done", "done", "skipped"]
    for layer in range(layers):
        np.testing.assert_array_equal(dst[layer][:, 0], src[layer][:, 5])
        np.testing.assert_array_equal(dst[layer][:, 3], src[layer][:, 6])
        assert not dst[layer][:, 4].any()
