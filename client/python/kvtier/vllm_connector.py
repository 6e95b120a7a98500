"""vLLM KV connector backed by kvtierd.

Load it with
    --kv-transfer-config '{"kv_connector":"KvtierConnector",
                           "kv_connector_module_path":"kvtier.vllm_connector",
                           "kv_role":"kv_both"}'

It follows vLLM's ``KVConnectorBase_V1`` as of v0.9–v0.11 (constructed as ``(vllm_config, role)``
or ``(vllm_config, role, kv_cache_config)``). It has been exercised with a harness that makes
vLLM's calls in vLLM's order with CPU arrays standing in for the KV tensors
(tests/python/test_vllm_connector.py); it has NOT been run inside vLLM here.

How it works:
- Scheduler side: each prompt's full blocks get one key per block and per tensor-parallel rank
  (from vLLM's block hashes when the request has them, else kvtier's PrefixHasher over the token
  ids). ``get_num_new_matched_tokens`` looks the keys up in every TP rank's namespace and counts
  the prefix present in all of them, so ranks never disagree on a hit; it never offers the last
  prompt token (vLLM must compute at least one). A load of at least ``async_load_min_blocks``
  blocks (default 256) is asked for in the background (the bool it returns is True): vLLM keeps
  the request waiting while the worker loads it on its own thread and reports it through
  ``get_finished``. Shorter loads run in the forward pass, layer by layer.
- Worker side: ``register_kv_caches`` describes the paged KV tensors to kvtier's GpuKv (device
  pointers of torch tensors, or host arrays); ``start_load_kv`` starts one load per request and
  ``wait_for_layer_load`` waits per layer; ``wait_for_save`` saves the prompt blocks computed this
  step (block-granular, after the forward). Blocks that were promised but did not load (evicted
  meanwhile, a failed copy) are reported by ``get_block_ids_with_load_errors`` and vLLM
  recomputes them: the cache fails closed.
- Namespace: model, revision, dtype, layout, layers, heads, head size, block size, TP and PP rank
  and size, so every rank finds only its own shard.

``kv_connector_extra_config`` keys (all optional): ``socket`` (kvtierd socket; default
$KVTIER_SOCKET, then ./var/kvtier.sock), ``backend`` ("auto", "cpu", "cuda"), ``layout``
("flash", "flashinfer", "mla"), ``keys`` ("engine": vLLM's block hashes when present, the
default; "tokens": kvtier's PrefixHasher), ``model`` (namespace model id), ``tp_rank``,
``async_load_min_blocks`` (0: never load in the background).
vLLM's block hashes match across processes only with a fixed PYTHONHASHSEED (or a cbor hash).
"""

from __future__ import annotations

import concurrent.futures
import enum
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

import kvtier

logger = logging.getLogger("kvtier.vllm_connector")

_HAVE_VLLM = False
if os.environ.get("KVTIER_NO_VLLM") != "1":
    try:  # vLLM is optional: without it the classes below are plain classes.
        from vllm.distributed.kv_transfer.kv_connector.v1.base import (  # type: ignore
            KVConnectorBase_V1 as _ConnectorBase,
            KVConnectorMetadata as _MetadataBase,
            KVConnectorRole,
        )

        _HAVE_VLLM = True
    except Exception:  # ImportError, or a vLLM whose import fails here
        pass

if not _HAVE_VLLM:

    class KVConnectorRole(enum.Enum):  # type: ignore[no-redef]
        SCHEDULER = 0
        WORKER = 1

    class _ConnectorBase:  # type: ignore[no-redef]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._connector_metadata = None

        def bind_connector_metadata(self, connector_metadata: Any) -> None:
            self._connector_metadata = connector_metadata

        def clear_connector_metadata(self) -> None:
            self._connector_metadata = None

        def _get_connector_metadata(self) -> Any:
            assert self._connector_metadata is not None
            return self._connector_metadata

        def has_connector_metadata(self) -> bool:
            return self._connector_metadata is not None

    class _MetadataBase:  # type: ignore[no-redef]
        pass


# ---------------------------------------------------------------------------------------------
# Configuration: the namespace layout from vLLM's config.


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).replace("torch.", "").lower()
    return {
        "float16": "fp16", "half": "fp16", "fp16": "fp16",
        "bfloat16": "bf16", "bf16": "bf16",
        "float32": "fp32", "float": "fp32", "fp32": "fp32",
        "fp8": "fp8_e4m3", "fp8_e4m3": "fp8_e4m3", "float8_e4m3fn": "fp8_e4m3",
        "fp8_e5m2": "fp8_e5m2", "float8_e5m2": "fp8_e5m2",
        "int8": "int8", "uint8": "int8",
    }.get(name, name)


def _extra_config(vllm_config: Any) -> dict:
    ktc = getattr(vllm_config, "kv_transfer_config", None)
    extra = getattr(ktc, "kv_connector_extra_config", None) if ktc is not None else None
    return dict(extra or {})


@dataclass(frozen=True)
class NamespaceSpec:
    """Everything that makes KV bytes compatible, except the TP rank (one namespace per rank)."""

    model: str
    revision: str
    num_layers: int
    kv_heads: int
    head_size: int
    dtype: str
    block_size: int
    layout: str
    tp_size: int
    pp_rank: int
    pp_size: int

    @staticmethod
    def from_vllm_config(vllm_config: Any, pp_rank: int = 0) -> "NamespaceSpec":
        extra = _extra_config(vllm_config)
        mc, cc, pc = vllm_config.model_config, vllm_config.cache_config, vllm_config.parallel_config
        use_mla = bool(getattr(mc, "use_mla", False))
        cache_dtype = getattr(cc, "cache_dtype", "auto")
        return NamespaceSpec(
            model=str(extra.get("model") or mc.model),
            revision=str(getattr(mc, "revision", None) or ""),
            num_layers=int(mc.get_num_layers(pc)),
            kv_heads=1 if use_mla else int(mc.get_num_kv_heads(pc)),
            head_size=int(mc.get_head_size()),
            dtype=_dtype_name(mc.dtype if cache_dtype in (None, "auto") else cache_dtype),
            block_size=int(cc.block_size),
            layout=str(extra.get("layout") or ("mla" if use_mla else "flash")),
            tp_size=int(getattr(pc, "tensor_parallel_size", 1)),
            pp_rank=pp_rank,
            pp_size=int(getattr(pc, "pipeline_parallel_size", 1)),
        )

    def register(self, client: kvtier.Client, tp_rank: int) -> kvtier.Namespace:
        return client.register_namespace(
            model=self.model, revision=self.revision, num_layers=self.num_layers,
            kv_heads=self.kv_heads, head_size=self.head_size, dtype=self.dtype,
            tokens_per_block=self.block_size, tp_rank=tp_rank, tp_size=self.tp_size,
            pp_rank=self.pp_rank, pp_size=self.pp_size, layout=self.layout)


def engine_hash_bytes(block_hash: Any) -> bytes:
    """A vLLM block hash as bytes: BlockHash is bytes since v0.11; before, a NamedTuple whose
    hash_value is an int (or an int itself)."""
    if isinstance(block_hash, (bytes, bytearray, memoryview)):
        return bytes(block_hash)
    value = getattr(block_hash, "hash_value", block_hash)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, int):
        return value.to_bytes((value.bit_length() + 8) // 8 or 1, "little", signed=True)
    raise TypeError(f"unsupported vLLM block hash type {type(block_hash).__name__}")


# ---------------------------------------------------------------------------------------------
# Metadata: the serialisable per-step plan the scheduler sends to workers.


@dataclass
class BlockTransfer:
    """Blocks of one request to load or save. keys[r] / parents[r]: TP rank r's keys and the key
    before keys[r][0] in its chain (None at a chain's start)."""

    req_id: str
    block_ids: list[int]
    keys: list[list[bytes]]
    parents: list[Optional[bytes]]
    async_load: bool = False  # loaded in the background, reported by get_finished


@dataclass
class KvtierConnectorMetadata(_MetadataBase):
    loads: list[BlockTransfer] = field(default_factory=list)
    saves: list[BlockTransfer] = field(default_factory=list)


@dataclass
class _RequestState:
    """Scheduler-side: what is known about one request."""

    request: Any
    keys: list[list[bytes]]  # per TP rank, one key per full prompt block
    hit_blocks: int = 0  # prompt blocks present in kvtier when last looked up
    block_ids: list[int] = field(default_factory=list)
    saved_blocks: int = 0  # prompt blocks kvtier has or that were planned for saving
    async_load: bool = False  # the last lookup asked vLLM to wait for a background load


def _first_group(block_ids: Any) -> list[int]:
    """vLLM passes block ids per KV-cache group (tuple of lists) since v0.9; take group 0."""
    if block_ids is None:
        return []
    if len(block_ids) > 0 and isinstance(block_ids[0], (list, tuple)):
        return list(block_ids[0])
    return list(block_ids)


# ---------------------------------------------------------------------------------------------


class KvtierConnector(_ConnectorBase):
    """KVConnectorBase_V1 over kvtierd (see the module docstring)."""

    def __init__(self, vllm_config: Any, role: Any, kv_cache_config: Any = None):
        if _HAVE_VLLM:
            try:
                super().__init__(vllm_config, role, kv_cache_config)
            except TypeError:  # vLLM before kv_cache_config (<= v0.10)
                super().__init__(vllm_config, role)
        else:
            super().__init__()
        self._vllm_config = vllm_config
        self._role_name = getattr(role, "name", str(role)).upper()
        self._extra = _extra_config(vllm_config)
        # The scheduler only looks up: it does not map the daemon's arena.
        self._client = kvtier.Client(self._extra.get("socket"),
                                     map_arena=self._role_name != "SCHEDULER")
        self._pp_rank = self._parallel_rank("pp_rank")
        self._spec = NamespaceSpec.from_vllm_config(vllm_config, self._pp_rank)
        self._block_size = self._spec.block_size
        self._use_engine_hashes = self._extra.get("keys", "engine") == "engine"
        # One namespace and hasher per TP rank: the scheduler looks up every rank's shard.
        self._namespaces = [self._spec.register(self._client, r) for r in range(self._spec.tp_size)]
        self._hashers = [kvtier.PrefixHasher(ns) for ns in self._namespaces]
        # Loads of at least this many blocks run in the background (vLLM keeps the request
        # waiting and schedules others meanwhile); shorter ones run inside the forward pass,
        # layer by layer. 0: never in the background.
        self._async_min_blocks = int(self._extra.get("async_load_min_blocks", 256))
        if self._role_name == "SCHEDULER":
            self._requests: dict[str, _RequestState] = {}
            self._pending_loads: list[BlockTransfer] = []
        else:
            self._tp_rank = self._parallel_rank("tp_rank")
            self._ns = self._namespaces[self._tp_rank]
            self._gpu_kv: Optional[kvtier.GpuKv] = None
            self._layer_index: dict[str, int] = {}
            self._paged_template: Optional[kvtier.PagedKV] = None
            self._stream_fn = lambda: 0
            self._loads: list[tuple[BlockTransfer, Optional[kvtier.KvTransfer]]] = []
            self._load_errors: set[int] = set()
            # Background loads: one thread; what finished waits for get_finished.
            self._async_lock = threading.Lock()
            self._async_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
            self._finished_loads: set[str] = set()
            self.stats = {"loaded_blocks": 0, "saved_blocks": 0, "failed_load_blocks": 0,
                          "failed_save_blocks": 0}

    # -- helpers ------------------------------------------------------------------------------

    def _parallel_rank(self, which: str) -> int:
        if which in self._extra:
            return int(self._extra[which])
        try:
            from vllm.distributed import parallel_state as ps  # type: ignore

            if which == "tp_rank":
                return int(ps.get_tensor_model_parallel_rank())
            return int(ps.get_pp_group().rank_in_group)
        except Exception:
            return 0

    def _request_keys(self, request: Any) -> list[list[bytes]]:
        """Per TP rank, one key per full prompt block."""
        prompt = list(request.prompt_token_ids)
        n_blocks = len(prompt) // self._block_size
        hashes = getattr(request, "block_hashes", None) if self._use_engine_hashes else None
        if hashes is not None and len(hashes) >= n_blocks:
            raw = [engine_hash_bytes(h) for h in list(hashes)[:n_blocks]]
            return [h.from_engine_hashes(raw) for h in self._hashers]
        # Token keys; LoRA and cache salt go into the first block's extra bytes.
        extra = b""
        lora = getattr(request, "lora_request", None)
        if lora is not None:
            extra += b"lora:" + str(getattr(lora, "lora_name", lora)).encode()
        salt = getattr(request, "cache_salt", None)
        if salt:
            extra += b"salt:" + str(salt).encode()
        tokens = prompt[: n_blocks * self._block_size]
        return [h.hash(tokens, extra=extra) for h in self._hashers]

    def _state(self, request: Any) -> _RequestState:
        state = self._requests.get(request.request_id)
        if state is None:
            state = _RequestState(request=request, keys=self._request_keys(request))
            self._requests[request.request_id] = state
        return state

    # -- scheduler side -----------------------------------------------------------------------

    def get_num_new_matched_tokens(
        self, request: Any, num_computed_tokens: int
    ) -> tuple[Optional[int], bool]:
        state = self._state(request)  # memoises the keys only
        # vLLM must compute at least the last prompt token itself.
        max_blocks = (len(request.prompt_token_ids) - 1) // self._block_size
        hits = max_blocks
        try:
            for ns, keys in zip(self._namespaces, state.keys):
                if hits == 0:
                    break
                hits = min(hits, self._client.lookup(ns, keys[:hits]))
        except kvtier.Error as e:
            logger.warning("kvtier lookup failed, treating as a miss: %s", e)
            hits = 0
        state.hit_blocks = hits
        external = max(0, hits * self._block_size - num_computed_tokens)
        # Worthwhile in the background: a long load, which would otherwise hold up the batch.
        state.async_load = (self._async_min_blocks > 0
                            and external // self._block_size >= self._async_min_blocks)
        return external, state.async_load

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int):
        state = self._state(request)
        block_ids = _first_group(blocks.get_block_ids()) if blocks is not None else []
        state.block_ids = block_ids
        if num_external_tokens <= 0:
            # Nothing loaded; kvtier may still hold a prefix (no need to save it again).
            state.saved_blocks = max(state.saved_blocks, min(state.hit_blocks, len(block_ids)))
            return
        end = state.hit_blocks
        start = end - num_external_tokens // self._block_size
        if start < 0 or end > len(block_ids):
            logger.warning("request %s: %d external tokens do not fit its blocks; not loading",
                           request.request_id, num_external_tokens)
            return
        self._pending_loads.append(
            BlockTransfer(
                req_id=request.request_id,
                block_ids=block_ids[start:end],
                keys=[k[start:end] for k in state.keys],
                parents=[k[start - 1] if start > 0 else None for k in state.keys],
                async_load=state.async_load,
            ))
        state.saved_blocks = max(state.saved_blocks, end)

    def build_connector_meta(self, scheduler_output: Any) -> KvtierConnectorMetadata:
        meta = KvtierConnectorMetadata(loads=self._pending_loads)
        self._pending_loads = []
        scheduled = getattr(scheduler_output, "num_scheduled_tokens", {}) or {}

        def plan_save(req_id: str, computed_after: int) -> None:
            state = self._requests.get(req_id)
            if state is None:
                return
            prompt_len = len(state.request.prompt_token_ids)
            upto = min(computed_after, prompt_len) // self._block_size
            upto = min(upto, len(state.block_ids), len(state.keys[0]) if state.keys else 0)
            start = state.saved_blocks
            if upto <= start:
                return
            meta.saves.append(
                BlockTransfer(
                    req_id=req_id,
                    block_ids=state.block_ids[start:upto],
                    keys=[k[start:upto] for k in state.keys],
                    parents=[k[start - 1] if start > 0 else None for k in state.keys],
                ))
            state.saved_blocks = upto

        for new_req in getattr(scheduler_output, "scheduled_new_reqs", []) or []:
            state = self._requests.get(new_req.req_id)
            if state is not None:
                state.block_ids = _first_group(new_req.block_ids)
            plan_save(new_req.req_id,
                      new_req.num_computed_tokens + scheduled.get(new_req.req_id, 0))

        cached = getattr(scheduler_output, "scheduled_cached_reqs", None)
        for req_id, new_ids, computed, resumed in self._cached_rows(cached):
            state = self._requests.get(req_id)
            if state is None:
                continue
            ids = _first_group(new_ids)
            state.block_ids = ids if resumed else state.block_ids + ids
            plan_save(req_id, computed + scheduled.get(req_id, 0))
        return meta

    @staticmethod
    def _cached_rows(cached: Any):
        """(req_id, new_block_ids, num_computed_tokens, resumed) for vLLM's cached requests:
        one object with parallel lists (v0.10+) or a list of per-request objects (v0.9)."""
        if cached is None:
            return
        if hasattr(cached, "req_ids"):
            resumed = getattr(cached, "resumed_from_preemption", None) or [False] * len(
                cached.req_ids)
            for i, req_id in enumerate(cached.req_ids):
                yield req_id, cached.new_block_ids[i], cached.num_computed_tokens[i], resumed[i]
        else:
            for row in cached:
                yield (row.req_id, row.new_block_ids, row.num_computed_tokens,
                       getattr(row, "resumed_from_preemption", False))

    def request_finished(self, request: Any, block_ids: list[int]) -> tuple[bool, Optional[dict]]:
        # Saves are synchronous (wait_for_save), so the blocks can be freed at once.
        self._requests.pop(request.request_id, None)
        return False, None

    def update_connector_output(self, connector_output: Any) -> None:
        return

    def take_events(self):
        return ()

    def reset_cache(self) -> Optional[bool]:
        return None

    @classmethod
    def get_required_kvcache_layout(cls, vllm_config: Any) -> Optional[str]:
        return "NHD"  # [.., block_size, kv_heads, head_size] inside a block

    # -- worker side --------------------------------------------------------------------------

    def register_kv_caches(self, kv_caches: dict[str, Any]) -> None:
        names = list(kv_caches)
        if len(names) != self._spec.num_layers:
            raise ValueError(f"kvtier: {len(names)} KV layers registered but the namespace says "
                             f"{self._spec.num_layers}")
        self._layer_index = {name: i for i, name in enumerate(names)}
        first = kv_caches[names[0]]
        shape, strides, elem, on_device = _describe(first)
        layout = self._spec.layout
        p = kvtier.PagedKV()
        p.layout = layout
        p.num_layers = len(names)
        p.element_bytes = elem
        if layout == "flash":  # [2, num_blocks, block_size, kv_heads, head_size]
            p.num_blocks, p.block_size, p.kv_heads, p.head_size = shape[1:5]
            p.kv_stride_bytes, p.block_stride_bytes = strides[0], strides[1]
        elif layout == "flashinfer":  # [num_blocks, 2, block_size, kv_heads, head_size]
            p.num_blocks, _, p.block_size, p.kv_heads, p.head_size = shape
            p.block_stride_bytes, p.kv_stride_bytes = strides[0], strides[1]
        elif layout == "mla":  # [num_blocks, block_size, head_size]
            p.num_blocks, p.block_size, p.head_size = shape
            p.kv_heads = 1
            p.block_stride_bytes = strides[0]
        else:
            raise ValueError(f"kvtier: layout '{layout}' is not supported by the connector")
        # Inside a block kvtier's copies expect NHD: [block_size, kv_heads, head_size] contiguous.
        inner = (p.block_size * p.kv_heads * p.head_size * elem, p.kv_heads * p.head_size * elem,
                 p.head_size * elem, elem)
        want = inner[2:] if layout == "mla" else inner[1:]
        if tuple(strides[-len(want):]) != want:
            raise ValueError(f"kvtier: KV tensors must be NHD-contiguous within a block (strides "
                             f"{strides}); get_required_kvcache_layout asks vLLM for NHD")
        expect = (self._spec.block_size, self._spec.kv_heads, self._spec.head_size)
        if (p.block_size, p.kv_heads, p.head_size) != expect:
            raise ValueError(f"kvtier: KV tensors have (block_size, kv_heads, head_size) "
                             f"{(p.block_size, p.kv_heads, p.head_size)}, the config says {expect}")
        for name in names:
            s, st, e, _ = _describe(kv_caches[name])
            if s != shape or st != strides or e != elem:
                raise ValueError(f"kvtier: layer {name} differs in shape or strides from {names[0]}")
        p.layer_bases = [_data_ptr(kv_caches[name]) for name in names]
        if p.staging_block_bytes() != self._ns.block_bytes:
            raise ValueError(f"kvtier: a block is {p.staging_block_bytes()} bytes in the KV "
                             f"tensors but {self._ns.block_bytes} in the namespace (dtype?)")
        self._paged_template = p
        backend = self._extra.get("backend") or ("auto" if on_device else "cpu")
        self._gpu_kv = kvtier.GpuKv(self._client, backend)
        if on_device:
            import torch  # only reached with torch tensors

            self._stream_fn = lambda: torch.cuda.current_stream().cuda_stream
        logger.info("kvtier: %d layers, layout %s, backend %s, namespace %s", len(names),
                    layout, self._gpu_kv.backend, self._ns)

    def _paged(self, block_ids: list[int]) -> kvtier.PagedKV:
        t = self._paged_template
        assert t is not None, "register_kv_caches was not called"
        p = kvtier.PagedKV()
        for attr in ("layout", "layer_bases", "num_layers", "num_blocks", "block_size",
                     "kv_heads", "head_size", "element_bytes", "block_stride_bytes",
                     "kv_stride_bytes", "layer_stride_bytes"):
            setattr(p, attr, getattr(t, attr))
        p.block_ids = list(block_ids)
        return p

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        meta = self._get_connector_metadata()
        for load in meta.loads:
            if load.async_load:
                if self._async_pool is None:
                    self._async_pool = concurrent.futures.ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="kvtier-load")
                self._async_pool.submit(self._load_in_background, load)
                continue
            try:
                t = self._gpu_kv.load_kv(self._ns, load.keys[self._tp_rank],
                                         self._paged(load.block_ids), self._stream_fn())
            except kvtier.Error as e:
                logger.warning("kvtier load of request %s failed: %s", load.req_id, e)
                t = None
            self._loads.append((load, t))

    def wait_for_layer_load(self, layer_name: str) -> None:
        layer = self._layer_index.get(layer_name)
        if layer is None:
            return
        for _, t in self._loads:
            if t is not None:
                try:
                    t.wait_layer(layer)
                except kvtier.Error:
                    pass  # reported per block by _finish_loads

    def _account(self, load: BlockTransfer, t: Optional[kvtier.KvTransfer]) -> None:
        """Waits for a load and books its blocks: loaded, or errors vLLM recomputes."""
        results = ["failed"] * len(load.block_ids)
        if t is not None:
            try:
                t.wait()
            except kvtier.Error as e:
                logger.warning("kvtier load of request %s failed: %s", load.req_id, e)
            results = t.results()
        with self._async_lock:
            for block_id, result in zip(load.block_ids, results):
                if result == "done":
                    self.stats["loaded_blocks"] += 1
                else:  # a miss (evicted since the lookup) or a failed copy: vLLM recomputes
                    self._load_errors.add(block_id)
                    self.stats["failed_load_blocks"] += 1

    def _finish_loads(self) -> None:
        for load, t in self._loads:
            self._account(load, t)
        self._loads = []

    def _load_in_background(self, load: BlockTransfer) -> None:
        try:
            t = self._gpu_kv.load_kv(self._ns, load.keys[self._tp_rank],
                                     self._paged(load.block_ids), self._stream_fn())
        except kvtier.Error as e:
            logger.warning("kvtier background load of request %s failed: %s", load.req_id, e)
            t = None
        self._account(load, t)
        with self._async_lock:
            self._finished_loads.add(load.req_id)

    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any,
                      **kwargs: Any) -> None:
        # Blocks are saved whole (every layer) in wait_for_save, after the forward pass wrote them.
        return

    def wait_for_save(self) -> None:
        self._finish_loads()
        if getattr(self, "_connector_metadata", None) is None:
            return
        meta = self._get_connector_metadata()
        for save in meta.saves:
            keys = save.keys[self._tp_rank]
            try:
                t = self._gpu_kv.save_kv(self._ns, keys, self._paged(save.block_ids),
                                         self._stream_fn(), save.parents[self._tp_rank])
                t.wait()
                results = t.results()
            except kvtier.Error as e:  # a save that does not happen is a future miss only
                logger.warning("kvtier save of request %s failed: %s", save.req_id, e)
                results = ["failed"] * len(keys)
            self.stats["saved_blocks"] += sum(r == "done" for r in results)
            self.stats["failed_save_blocks"] += sum(r == "failed" for r in results)

    def get_finished(self, finished_req_ids: set[str]) -> tuple[Optional[set], Optional[set]]:
        # Saves complete within the step; background loads report here once done.
        if self._role_name == "SCHEDULER":
            return None, None
        with self._async_lock:
            done, self._finished_loads = self._finished_loads, set()
        return None, (done or None)

    def get_block_ids_with_load_errors(self) -> set[int]:
        self._finish_loads()
        with self._async_lock:
            errors, self._load_errors = self._load_errors, set()
        return errors

    def handle_preemptions(self, *args: Any, **kwargs: Any) -> None:
        return

    def shutdown(self) -> None:
        if self._role_name != "SCHEDULER":
            self._finish_loads()
            if self._async_pool is not None:
                self._async_pool.shutdown(wait=True)


def _describe(tensor: Any) -> tuple[tuple, tuple, int, bool]:
    """(shape, strides in bytes, element bytes, on a CUDA device) of a torch tensor or numpy array."""
    if hasattr(tensor, "data_ptr"):  # torch
        elem = tensor.element_size()
        return (tuple(tensor.shape), tuple(s * elem for s in tensor.stride()), elem,
                bool(getattr(tensor, "is_cuda", False)))
    return tuple(tensor.shape), tuple(tensor.strides), tensor.itemsize, False


def _data_ptr(tensor: Any) -> int:
    if hasattr(tensor, "data_ptr"):
        return int(tensor.data_ptr())
    return int(tensor.ctypes.data)
