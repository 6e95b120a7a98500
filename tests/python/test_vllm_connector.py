"""kvtier.vllm_connector.KvtierConnector driven by a harness in vLLM's call order.

vLLM is not installed here: the harness stands in for its scheduler and model runner with the
same calls (scheduler: get_num_new_matched_tokens -> update_state_after_alloc ->
build_connector_meta; worker: bind_connector_metadata -> start_load_kv -> wait_for_layer_load ->
save_kv_layer -> wait_for_save -> get_block_ids_with_load_errors -> clear_connector_metadata),
numpy arrays in vLLM's flash layout [2, num_blocks, block_size, kv_heads, head_size] for the KV
tensors, and a deterministic "forward pass" so loaded blocks can be checked byte for byte.
"""

from __future__ import annotations

import itertools
import os
import pickle
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np
import pytest

os.environ.setdefault("KVTIER_NO_VLLM", "1")  # the plain-class path even where vLLM exists
from kvtier import vllm_connector as vc  # noqa: E402

import kvtier  # noqa: E402

BS, HEADS, HD, LAYERS, NUM_BLOCKS = 16, 2, 8, 3, 64
_models = itertools.count()


class FakeModelConfig:
    def __init__(self, model: str):
        self.model, self.dtype, self.revision, self.use_mla = model, "float16", None, False

    def get_num_layers(self, parallel_config):
        return LAYERS

    def get_num_kv_heads(self, parallel_config):
        return HEADS

    def get_head_size(self):
        return HD


def make_config(socket: str, tp_size: int = 1, **extra: Any) -> Any:
    return SimpleNamespace(
        model_config=FakeModelConfig(f"harness/model-{next(_models)}"),
        cache_config=SimpleNamespace(block_size=BS, cache_dtype="auto"),
        parallel_config=SimpleNamespace(tensor_parallel_size=tp_size, pipeline_parallel_size=1),
        kv_transfer_config=SimpleNamespace(
            kv_connector="KvtierConnector",
            kv_connector_module_path="kvtier.vllm_connector",
            kv_role="kv_both",
            kv_connector_extra_config={"socket": socket, **extra}),
    )


@dataclass
class Request:
    request_id: str
    prompt_token_ids: list[int]
    block_hashes: Optional[list[bytes]] = None


@dataclass
class Blocks:  # KVCacheBlocks
    ids: list[int]

    def get_block_ids(self):
        return (self.ids,)


@dataclass
class NewRequestData:
    req_id: str
    prompt_token_ids: list[int]
    block_ids: tuple
    num_computed_tokens: int


@dataclass
class CachedRequestData:  # v0.10's columnar form
    req_ids: list[str] = field(default_factory=list)
    resumed_from_preemption: list[bool] = field(default_factory=list)
    new_block_ids: list[Any] = field(default_factory=list)
    num_computed_tokens: list[int] = field(default_factory=list)


@dataclass
class SchedulerOutput:
    scheduled_new_reqs: list[NewRequestData]
    scheduled_cached_reqs: CachedRequestData
    num_scheduled_tokens: dict[str, int]


def kv_value(rank: int, layer: int, tokens: list[int], pos: int) -> np.ndarray:
    """What the model computes for one token: [2, heads, head_size], a function of the prefix."""
    seed = hash((rank, layer, tuple(tokens[: pos + 1]))) & 0xFFFFFFFF
    return np.random.default_rng(seed).standard_normal((2, HEADS, HD)).astype(np.float16)


class Worker:
    def __init__(self, config: Any, rank: int):
        config.kv_transfer_config.kv_connector_extra_config["tp_rank"] = rank
        self.rank = rank
        self.conn = vc.KvtierConnector(config, vc.KVConnectorRole.WORKER)
        self.names = [f"model.layers.{i}.self_attn.attn" for i in range(LAYERS)]
        self.flash = config.kv_transfer_config.kv_connector_extra_config.get("layout",
                                                                             "flash") == "flash"
        shape = (2, NUM_BLOCKS, BS, HEADS, HD) if self.flash else (NUM_BLOCKS, 2, BS, HEADS, HD)
        self.kv = {n: np.zeros(shape, np.float16) for n in self.names}
        self.conn.register_kv_caches(self.kv)

    def block(self, name: str, blk) -> np.ndarray:
        """[2, block_size, heads, head_size] view of one block (either layout)."""
        return self.kv[name][:, blk] if self.flash else self.kv[name][blk]

    def scramble(self, block_ids: list[int]) -> None:
        rng = np.random.default_rng()
        for name in self.names:
            for b in block_ids:
                self.block(name, b)[...] = rng.standard_normal((2, BS, HEADS, HD))

    def execute(self, meta, tokens_by_req: dict[str, tuple[list[int], list[int], int, int]]):
        """One model step: load, per-layer compute of the scheduled tokens, save."""
        self.conn.bind_connector_metadata(meta)
        self.conn.start_load_kv(SimpleNamespace(attn_metadata=None))
        for layer, name in enumerate(self.names):
            self.conn.wait_for_layer_load(name)
            for tokens, block_ids, start, end in tokens_by_req.values():
                for pos in range(start, end):
                    blk, off = block_ids[pos // BS], pos % BS
                    self.block(name, blk)[:, off] = kv_value(self.rank, layer, tokens, pos)
            self.conn.save_kv_layer(name, self.kv[name], None)
        self.conn.wait_for_save()
        errors = self.conn.get_block_ids_with_load_errors()
        assert self.conn.get_finished(set()) == (None, None)
        self.conn.clear_connector_metadata()
        return errors

    def check_prefix(self, tokens: list[int], block_ids: list[int], upto_tokens: int) -> None:
        for layer, name in enumerate(self.names):
            for pos in range(upto_tokens):
                got = self.block(name, block_ids[pos // BS])[:, pos % BS]
                np.testing.assert_array_equal(got, kv_value(self.rank, layer, tokens, pos))


class Engine:
    """The scheduler connector, one worker connector per TP rank, a block allocator."""

    def __init__(self, socket: str, tp_size: int = 1, **extra: Any):
        self.config = make_config(socket, tp_size, **extra)
        self.sched = vc.KvtierConnector(self.config, vc.KVConnectorRole.SCHEDULER)
        self.workers = [Worker(make_config_copy(self.config), r) for r in range(tp_size)]
        self.free = list(range(NUM_BLOCKS))
        self.ids = itertools.count()

    def alloc(self, n: int) -> list[int]:
        ids, self.free = self.free[:n], self.free[n:]
        for w in self.workers:
            w.scramble(ids)
        return ids

    def run(self, tokens: list[int], local_computed: int = 0, block_hashes=None,
            chunk: Optional[int] = None, drop_before_load=None):
        """Prefills one request; returns (external tokens, load errors per rank, block ids)."""
        req = Request(f"req-{next(self.ids)}", tokens, block_hashes)
        ext, is_async = self.sched.get_num_new_matched_tokens(req, local_computed)
        assert is_async is False and ext >= 0
        # Side-effect free: asking again gives the same answer.
        assert self.sched.get_num_new_matched_tokens(req, local_computed) == (ext, False)
        block_ids = self.alloc(-(-len(tokens) // BS))
        self.sched.update_state_after_alloc(req, Blocks(block_ids), ext)
        computed = local_computed + ext
        if local_computed:  # the GPU prefix cache's blocks hold their KV already
            for w in self.workers:
                self.fill(w, tokens, block_ids, 0, local_computed)
        if drop_before_load is not None:
            drop_before_load(req)
        errors = [set() for _ in self.workers]
        first = True
        while computed < len(tokens):
            n = min(chunk or len(tokens), len(tokens) - computed)
            if first:
                out = SchedulerOutput(
                    [NewRequestData(req.request_id, tokens, (block_ids,), computed)],
                    CachedRequestData(), {req.request_id: n})
            else:
                out = SchedulerOutput([], CachedRequestData([req.request_id], [False], [None],
                                                            [computed]), {req.request_id: n})
            meta = pickle.loads(pickle.dumps(self.sched.build_connector_meta(out)))
            for r, w in enumerate(self.workers):
                errors[r] |= w.execute(meta, {req.request_id: (tokens, block_ids, computed,
                                                               computed + n)})
            computed += n
            first = False
        if not any(errors):
            for w in self.workers:
                w.check_prefix(tokens, block_ids, len(tokens))
        assert self.sched.request_finished(req, block_ids) == (False, None)
        return ext, errors, block_ids

    def fill(self, worker, tokens, block_ids, start, end):
        for layer, name in enumerate(worker.names):
            for pos in range(start, end):
                worker.block(name, block_ids[pos // BS])[:, pos % BS] = kv_value(
                    worker.rank, layer, tokens, pos)


def make_config_copy(config: Any) -> Any:
    extra = dict(config.kv_transfer_config.kv_connector_extra_config)
    return SimpleNamespace(
        model_config=config.model_config, cache_config=config.cache_config,
        parallel_config=config.parallel_config,
        kv_transfer_config=SimpleNamespace(kv_connector_extra_config=extra))


def tokens(seed: int, n: int) -> list[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(0, 50000, n)]


@pytest.mark.parametrize("layout", ["flash", "flashinfer"])
def test_miss_then_hit_round_trips_bytes(daemon, layout):
    e = Engine(daemon.socket, layout=layout)
    prompt = tokens(1, 5 * BS + 3)
    ext, errors, _ = e.run(prompt)
    assert ext == 0 and errors == [set()]
    assert e.workers[0].conn.stats["saved_blocks"] == 5
    ext, errors, _ = e.run(prompt)  # the same prompt again: 5 blocks loaded, bytes checked
    assert ext == 5 * BS and errors == [set()]
    assert e.workers[0].conn.stats["loaded_blocks"] == 5


def test_shared_prefix_and_last_token_rule(daemon):
    e = Engine(daemon.socket)
    system = tokens(2, 3 * BS)
    e.run(system + tokens(3, 40))
    ext, errors, _ = e.run(system + tokens(4, 40))
    assert ext == 3 * BS and errors == [set()]
    # A prompt of exactly 4 cached blocks loads only 3: vLLM computes the last token itself.
    exact = tokens(5, 4 * BS)
    e.run(exact)
    assert e.run(exact)[0] == 3 * BS


def test_local_prefix_hit_loads_only_beyond_it(daemon):
    e = Engine(daemon.socket)
    prompt = tokens(6, 6 * BS + 1)
    e.run(prompt)
    ext, errors, _ = e.run(prompt, local_computed=2 * BS)
    assert ext == 4 * BS and errors == [set()]
    assert e.workers[0].conn.stats["loaded_blocks"] == 4


def test_chunked_prefill_saves_every_chunk(daemon):
    e = Engine(daemon.socket)
    prompt = tokens(7, 7 * BS + 5)
    e.run(prompt, chunk=2 * BS + 3)  # chunks end mid-block
    assert e.workers[0].conn.stats["saved_blocks"] == 7
    assert e.run(prompt)[0] == 7 * BS


def test_tensor_parallel_ranks_agree_after_eviction(daemon):
    e = Engine(daemon.socket, tp_size=2)
    prompt = tokens(8, 6 * BS + 2)
    e.run(prompt)
    client = kvtier.Client(daemon.socket)
    ns1 = e.sched._namespaces[1]
    keys1 = kvtier.PrefixHasher(ns1).hash(prompt)
    assert client.lookup(ns1, keys1) == 6
    client.drop(ns1, keys1[4:])  # rank 1 lost blocks 4 and 5; rank 0 still has all 6
    ext, errors, _ = e.run(prompt)
    assert ext == 4 * BS and errors == [set(), set()]
    assert [w.conn.stats["loaded_blocks"] for w in e.workers] == [4, 4]


def test_failed_load_is_reported_and_recomputed(daemon):
    e = Engine(daemon.socket)
    prompt = tokens(9, 4 * BS + 1)
    e.run(prompt)
    client = kvtier.Client(daemon.socket)

    def evict_tail(req):  # between the scheduler's lookup and the worker's load
        ns = e.sched._namespaces[0]
        client.drop(ns, kvtier.PrefixHasher(ns).hash(prompt)[2:])

    ext, errors, block_ids = e.run(prompt, drop_before_load=evict_tail)
    assert ext == 4 * BS
    assert errors == [set(block_ids[2:4])]  # blocks 2 and 3 promised but missing
    assert e.workers[0].conn.stats["failed_load_blocks"] == 2


def test_engine_block_hashes_are_the_keys(daemon):
    e = Engine(daemon.socket)
    prompt = tokens(10, 3 * BS + 1)
    hashes = [f"vllm-hash-{i}".encode() for i in range(3)]
    e.run(prompt, block_hashes=hashes)
    assert e.run(prompt, block_hashes=hashes)[0] == 3 * BS
    # Same tokens, other hashes (e.g. another LoRA or cache salt): a miss.
    assert e.run(prompt, block_hashes=[b"x" + h for h in hashes])[0] == 0
    # vLLM < 0.11 BlockHash: a NamedTuple with an int hash_value.
    old = [SimpleNamespace(hash_value=-(10**30) + i) for i in range(3)]
    e.run(prompt, block_hashes=old)
    assert e.run(prompt, block_hashes=old)[0] == 3 * BS


def test_long_loads_run_in_the_background_and_finish_through_get_finished(daemon):
    e = Engine(daemon.socket, async_load_min_blocks=4)
    prompt = tokens(11, 6 * BS + 1)
    e.run(prompt)  # a miss: saved, nothing to load (and nothing asked in the background)
    w = e.workers[0]

    req = Request("req-async", prompt)
    ext, is_async = e.sched.get_num_new_matched_tokens(req, 0)
    assert (ext, is_async) == (6 * BS, True)  # 6 blocks >= 4: worth a background load
    block_ids = e.alloc(7)
    e.sched.update_state_after_alloc(req, Blocks(block_ids), ext)
    # vLLM keeps the request waiting: it is not scheduled this step, only its load is.
    meta = pickle.loads(pickle.dumps(e.sched.build_connector_meta(
        SchedulerOutput([], CachedRequestData(), {}))))
    assert [l.async_load for l in meta.loads] == [True]
    w.conn.bind_connector_metadata(meta)
    w.conn.start_load_kv(SimpleNamespace(attn_metadata=None))
    w.conn.wait_for_save()
    w.conn.clear_connector_metadata()
    # The background load ends on its own thread: wait for the report, with a deadline.
    w.conn._async_pool.shutdown(wait=True)
    assert w.conn.get_finished(set()) == (None, {"req-async"})
    assert w.conn.get_finished(set()) == (None, None)  # reported once
    assert w.conn.get_block_ids_with_load_errors() == set()
    w.check_prefix(prompt, block_ids, 6 * BS)
    assert w.conn.stats["loaded_blocks"] == 6
    # Below the threshold, loads stay in the forward pass.
    assert e.sched.get_num_new_matched_tokens(Request("short", prompt[: 3 * BS + 1]), 0) == (
        3 * BS, False)


def test_metadata_and_interface():
    meta = vc.KvtierConnectorMetadata()
    assert pickle.loads(pickle.dumps(meta)) == meta
    for name in ("get_num_new_matched_tokens", "update_state_after_alloc", "build_connector_meta",
                 "request_finished", "register_kv_caches", "start_load_kv", "wait_for_layer_load",
                 "save_kv_layer", "wait_for_save", "get_finished",
                 "get_block_ids_with_load_errors", "bind_connector_metadata",
                 "clear_connector_metadata"):
        assert callable(getattr(vc.KvtierConnector, name)), name
    assert vc.engine_hash_bytes(b"abc") == b"abc"
    assert vc.engine_hash_bytes(5) != vc.engine_hash_bytes(-5)


def test_rejects_non_nhd_tensors(daemon):
    config = make_config(daemon.socket)
    config.kv_transfer_config.kv_connector_extra_config["tp_rank"] = 0
    conn = vc.KvtierConnector(config, vc.KVConnectorRole.WORKER)
    hnd = np.zeros((2, NUM_BLOCKS, HEADS, BS, HD), np.float16).transpose(0, 1, 3, 2, 4)
    with pytest.raises(ValueError, match="NHD"):
        conn.register_kv_caches({f"layer.{i}": hnd for i in range(LAYERS)})
