"""Type stubs of the C++ binding (kvtier._native); import these names from `kvtier`."""

from typing import Any, Iterable, Optional, Sequence, Union


Key = bytes  # 16 bytes: low 64 bits then high 64 bits, little-endian
KeyLike = Union[bytes, bytearray, memoryview]
Buffers = Union[Sequence[Any], Any]  # one buffer per key, or one buffer of len(keys) * block_bytes

class Namespace:
    """A registered layout: its id (seeds the keys) and block size in bytes."""

    def __init__(self, id: int, block_bytes: int, tokens_per_block: int = 0) -> None: ...
    @property
    def id(self) -> int: ...
    @property
    def block_bytes(self) -> int: ...
    @property
    def tokens_per_block(self) -> int: ...

class PrefixHasher:
    """Chained 128-bit block keys over token ids, identical to the C++ PrefixHasher and the daemon."""

    def __init__(self, ns: Namespace, tokens_per_block: Optional[int] = None) -> None: ...
    def hash(
        self, token_ids: Iterable[int], parent: Optional[KeyLike] = None, extra: bytes = b""
    ) -> list[Key]:
        """One key per full block (a trailing partial block gets none), chained from `parent`."""
    def from_engine_hash(self, engine_hash: bytes) -> Key:
        """Maps an engine's own block hash (e.g. vLLM's) to a key of this namespace."""
    def from_engine_hashes(self, engine_hashes: Iterable[bytes]) -> list[Key]: ...

class Client:
    """A connection to the local kvtierd. Thread-safe; every call releases the GIL."""

    def __init__(
        self,
        socket: Optional[str] = None,
        timeout_ms: int = 5000,
        lease_ms: int = 0,
        map_arena: bool = True,
        prefault: bool = True,
    ) -> None:
        """socket None: $KVTIER_SOCKET, else ./var/kvtier.sock. Raises UnavailableError."""
    @property
    def socket_path(self) -> str: ...
    def register_namespace(
        self,
        *,
        model: str,
        num_layers: int = 0,
        kv_heads: int = 0,
        head_size: int = 0,
        dtype: str = "",
        tokens_per_block: int = 0,
        tp_rank: int = 0,
        tp_size: int = 1,
        pp_rank: int = 0,
        pp_size: int = 1,
        layout: str = "",
        block_bytes: int = 0,
        revision: str = "",
    ) -> Namespace: ...
    def lookup(self, ns: Union[Namespace, int], keys: Sequence[KeyLike]) -> int:
        """Number of leading keys present (in any tier)."""
    def lookup_tiers(self, ns: Union[Namespace, int], keys: Sequence[KeyLike]) -> list[str]:
        """Tier of each present leading key: "dram", "nvme" or "remote"."""
    def prefetch(self, ns: Union[Namespace, int], keys: Sequence[KeyLike]) -> int: ...
    def save(
        self,
        ns: Namespace,
        keys: Sequence[KeyLike],
        buffers: Buffers,
        parent: Optional[KeyLike] = None,
    ) -> int:
        """Copies block_bytes per key in; returns blocks written (present keys are skipped)."""
    def load(self, ns: Namespace, keys: Sequence[KeyLike], buffers: Buffers) -> int:
        """Copies the longest present prefix into writable buffers; returns its length."""
    def save_ptrs(
        self,
        ns: Namespace,
        keys: Sequence[KeyLike],
        ptrs: Sequence[int],
        parent: Optional[KeyLike] = None,
    ) -> int:
        """save() from raw host addresses (e.g. tensor.data_ptr()), block_bytes each."""
    def load_ptrs(self, ns: Namespace, keys: Sequence[KeyLike], ptrs: Sequence[int]) -> int: ...
    def drop(self, ns: Union[Namespace, int], keys: Sequence[KeyLike]) -> dict[str, int]: ...
    def drop_all(self, ns: Union[Namespace, int]) -> dict[str, int]: ...
    def stats(self) -> dict[str, Any]: ...
    def cluster(self) -> dict[str, Any]: ...

class PagedKV:
    """An engine's paged KV cache (device or host pointers) and the blocks one call moves."""

    layout: str  # "flash" "flashinfer" "mla" "contiguous"
    layer_bases: list[int]
    num_layers: int
    num_blocks: int
    block_size: int
    kv_heads: int
    head_size: int
    element_bytes: int
    block_stride_bytes: int
    kv_stride_bytes: int
    layer_stride_bytes: int
    block_ids: list[int]
    def __init__(self) -> None: ...
    def staging_block_bytes(self) -> int: ...
    def fill_compact_strides(self) -> None: ...

class KvTransfer:
    @property
    def num_layers(self) -> int: ...
    def wait_layer(self, layer: int) -> None: ...
    def wait(self) -> None: ...
    def results(self) -> list[str]:
        """Per key: "pending", "done", "skipped" (load: a miss; save: already cached), "failed"."""

class GpuKv:
    def __init__(self, client: Client, backend: str = "auto") -> None: ...
    @property
    def backend(self) -> str: ...
    def save_kv(
        self,
        ns: Namespace,
        keys: Sequence[KeyLike],
        kv: PagedKV,
        stream: int = 0,
        parent: Optional[KeyLike] = None,
    ) -> KvTransfer: ...
    def load_kv(
        self, ns: Namespace, keys: Sequence[KeyLike], kv: PagedKV, stream: int = 0
    ) -> KvTransfer: ...

def resolve_socket_path(path: str = "") -> str: ...
