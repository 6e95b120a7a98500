"""SGLang HiCache storage backend (L3) backed by kvtierd.

The ``HiCacheStorage`` shape of SGLang's python/sglang/srt/mem_cache/hicache_storage.py:
``exists``/``batch_exists`` (count of consecutive present keys from the start), ``get``/``set``,
``batch_get``/``batch_set`` (buffers), ``batch_get_v1``/``batch_set_v1`` (straight into and out
of the registered host memory pool: zero-copy when the pool hands out one contiguous region per
page, else one page copy), ``clear``, ``get_stats``. Loaded as a dynamic backend:

    --hicache-storage-backend dynamic
    --hicache-storage-backend-extra-config '{"backend_name": "kvtier",
        "module_path": "kvtier.sglang_backend", "class_name": "KvtierHiCacheStorage",
        "socket": "/path/to/kvtier.sock"}'

(SGLang constructs it as ``KvtierHiCacheStorage(storage_config, kwargs)`` and then calls
``register_mem_pool_host``.) Zero-copy needs one region per page (the MLA page-first pool); with
K and V in separate regions it copies each page once through ``get_data_page`` /
``set_from_flat_data_page``.

Pages are kvtier blocks of an "opaque" namespace (model, TP/PP rank and size; MLA models share one
namespace across TP ranks, their KV being replicated); SGLang's string page hashes map to kvtier
keys with PrefixHasher.from_engine_hash. Not run inside SGLang here: tested with a harness
(tests/python/test_sglang_backend.py).
"""

from __future__ import annotations

import logging
import os
from typing import Any, List, Optional

import numpy as np

import kvtier

logger = logging.getLogger("kvtier.sglang_backend")

_Base: Any = object
if os.environ.get("KVTIER_NO_SGLANG") != "1":
    try:
        from sglang.srt.mem_cache.hicache_storage import HiCacheStorage as _Base  # type: ignore
    except Exception:  # SGLang is optional
        _Base = object


def _config_get(config: Any, name: str, default: Any = None) -> Any:
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(name, default)
    return getattr(config, name, default)


class KvtierHiCacheStorage(_Base):
    """HiCacheStorage over kvtierd. ``storage_config`` is SGLang's HiCacheStorageConfig (or
    anything with its fields: tp_rank, tp_size, pp_rank, pp_size, is_mla_model, model_name,
    extra_config)."""

    def __init__(self, storage_config: Any = None, *args: Any, **kwargs: Any):
        extra = dict(_config_get(storage_config, "extra_config") or {})
        extra.update(kwargs.get("extra_config") or {})
        self._client = kvtier.Client(extra.get("socket"))
        mla = bool(_config_get(storage_config, "is_mla_model", False))
        self._layout = dict(
            model=str(_config_get(storage_config, "model_name") or extra.get("model") or "sglang"),
            tp_rank=0 if mla else int(_config_get(storage_config, "tp_rank", 0)),
            tp_size=1 if mla else int(_config_get(storage_config, "tp_size", 1)),
            pp_rank=int(_config_get(storage_config, "pp_rank", 0)),
            pp_size=int(_config_get(storage_config, "pp_size", 1)),
        )
        self._ns: Optional[kvtier.Namespace] = None
        self._hasher: Optional[kvtier.PrefixHasher] = None
        self.mem_pool_host: Any = None
        if extra.get("page_bytes"):
            self._namespace(int(extra["page_bytes"]))

    # -- namespace and keys -------------------------------------------------------------------

    def _namespace(self, page_bytes: int) -> kvtier.Namespace:
        if self._ns is None:
            self._ns = self._client.register_namespace(layout="opaque", block_bytes=page_bytes,
                                                       **self._layout)
            self._hasher = kvtier.PrefixHasher(self._ns, tokens_per_block=1)
        elif self._ns.block_bytes != page_bytes:
            raise ValueError(f"kvtier: page of {page_bytes} bytes; this backend stores "
                             f"{self._ns.block_bytes}-byte pages")
        return self._ns

    def _keys(self, keys: List[str]) -> list[bytes]:
        assert self._hasher is not None
        return self._hasher.from_engine_hashes(
            [k.encode() if isinstance(k, str) else bytes(k) for k in keys])

    def register_mem_pool_host(self, mem_pool_host: Any) -> None:
        self.mem_pool_host = mem_pool_host
        page_bytes = int(mem_pool_host.get_size_per_token()) * int(mem_pool_host.page_size)
        self._namespace(page_bytes)

    # -- existence ----------------------------------------------------------------------------

    def batch_exists(self, keys: List[str], extra_info: Any = None) -> int:
        if self._ns is None or not keys:
            return 0
        try:
            return self._client.lookup(self._ns, self._keys(keys))
        except kvtier.Error as e:
            logger.warning("kvtier lookup failed: %s", e)
            return 0

    def exists(self, key: str) -> bool:
        return self.batch_exists([key]) == 1

    # -- buffers ------------------------------------------------------------------------------

    @staticmethod
    def _nbytes(value: Any) -> int:
        if hasattr(value, "nbytes"):
            return int(value.nbytes)
        return memoryview(value).nbytes

    @staticmethod
    def _pointer(value: Any, writable: bool) -> Optional[int]:
        """A host address for torch tensors (which lack the buffer protocol); None otherwise."""
        if hasattr(value, "data_ptr") and not isinstance(value, np.ndarray):
            if getattr(value, "is_cuda", False) or not value.is_contiguous():
                raise ValueError("kvtier: pages must be contiguous host tensors")
            return int(value.data_ptr())
        return None

    def _save(self, keys: list[bytes], values: List[Any]) -> bool:
        ptrs = [self._pointer(v, False) for v in values]
        if all(p is not None for p in ptrs):
            self._client.save_ptrs(self._ns, keys, ptrs)
        else:
            self._client.save(self._ns, keys, values)
        return True

    def _load(self, keys: list[bytes], targets: List[Any]) -> int:
        ptrs = [self._pointer(t, True) for t in targets]
        if all(p is not None for p in ptrs):
            return self._client.load_ptrs(self._ns, keys, ptrs)
        return self._client.load(self._ns, keys, targets)

    def _page_buffer(self) -> Any:
        """An empty page: a torch tensor of the host pool's dtype when the pool is torch's (what
        SGLang's set_from_flat_data_page takes), else numpy bytes."""
        dtype = getattr(self.mem_pool_host, "dtype", None)
        if dtype is not None and type(dtype).__module__.startswith("torch"):
            import torch  # only with a torch host pool

            itemsize = torch.empty((), dtype=dtype).element_size()
            return torch.empty(self._ns.block_bytes // itemsize, dtype=dtype)
        return np.empty(self._ns.block_bytes, np.uint8)

    # -- get / set ----------------------------------------------------------------------------

    def batch_set(self, keys: List[str], values: Optional[Any] = None,
                  target_locations: Optional[Any] = None, target_sizes: Optional[Any] = None
                  ) -> bool:
        values = values if values is not None else target_locations
        if not keys:
            return True
        if values is None or len(values) != len(keys):
            return False
        try:
            self._namespace(self._nbytes(values[0]))
            return self._save(self._keys(keys), list(values))
        except (kvtier.Error, ValueError, TypeError) as e:
            logger.warning("kvtier batch_set failed: %s", e)
            return False

    def set(self, key: str, value: Optional[Any] = None, target_location: Optional[Any] = None,
            target_sizes: Optional[Any] = None) -> bool:
        value = value if value is not None else target_location
        return self.batch_set([key], [value])

    def batch_get(self, keys: List[str], target_locations: Optional[Any] = None,
                  target_sizes: Optional[Any] = None) -> List[Any]:
        """Buffers for the present prefix of keys (into target_locations when given), None after."""
        if self._ns is None or not keys:
            return [None] * len(keys)
        targets = list(target_locations) if target_locations is not None else [
            self._page_buffer() for _ in keys]
        try:
            n = self._load(self._keys(keys), targets)
        except (kvtier.Error, ValueError, TypeError) as e:
            logger.warning("kvtier batch_get failed: %s", e)
            n = 0
        return [t if i < n else None for i, t in enumerate(targets)]

    def get(self, key: str, target_location: Optional[Any] = None,
            target_sizes: Optional[Any] = None) -> Any:
        return self.batch_get([key], None if target_location is None else [target_location])[0]

    # -- zero-copy into the host pool ---------------------------------------------------------

    def _page_regions(self, host_indices: Any, n: int) -> Optional[list[int]]:
        """Addresses of each page's single contiguous region, when the pool has one per page."""
        pool = self.mem_pool_host
        meta = getattr(pool, "get_page_buffer_meta", None)
        if meta is None:
            return None
        ptrs, sizes = meta(host_indices)
        if len(ptrs) != n or any(int(s) != self._ns.block_bytes for s in sizes):
            return None  # e.g. K and V as separate regions: use the page copy path
        return [int(p) for p in ptrs]

    def _page_starts(self, host_indices: Any, n: int) -> list[int]:
        page = int(self.mem_pool_host.page_size)
        return [int(host_indices[i * page]) for i in range(n)]

    def batch_set_v1(self, keys: List[str], host_indices: Any, extra_info: Any = None
                     ) -> List[bool]:
        if self.mem_pool_host is None or self._ns is None:
            return [False] * len(keys)
        try:
            regions = self._page_regions(host_indices, len(keys))
            k = self._keys(keys)
            if regions is not None:
                self._client.save_ptrs(self._ns, k, regions)
            else:
                pages = [self.mem_pool_host.get_data_page(i, flat=True)
                         for i in self._page_starts(host_indices, len(keys))]
                self._save(k, pages)
            return [True] * len(keys)
        except (kvtier.Error, ValueError, TypeError) as e:
            logger.warning("kvtier batch_set_v1 failed: %s", e)
            return [False] * len(keys)

    def batch_get_v1(self, keys: List[str], host_indices: Any, extra_info: Any = None
                     ) -> List[bool]:
        if self.mem_pool_host is None or self._ns is None:
            return [False] * len(keys)
        try:
            regions = self._page_regions(host_indices, len(keys))
            k = self._keys(keys)
            if regions is not None:
                n = self._client.load_ptrs(self._ns, k, regions)
            else:
                starts = self._page_starts(host_indices, len(keys))
                pages = [self._page_buffer() for _ in keys]
                n = self._load(k, pages)
                for start, page in zip(starts[:n], pages[:n]):
                    self.mem_pool_host.set_from_flat_data_page(start, page)
            return [i < n for i in range(len(keys))]
        except (kvtier.Error, ValueError, TypeError) as e:
            logger.warning("kvtier batch_get_v1 failed: %s", e)
            return [False] * len(keys)

    # -- housekeeping -------------------------------------------------------------------------

    def clear(self) -> None:
        if self._ns is not None:
            self._client.drop_all(self._ns)

    def get_stats(self) -> dict:
        return self._client.stats()
