#!/usr/bin/env python3
"""chat_sim: a toy engine simulating multi-turn chats against kvtierd.

Each conversation shares one system prompt; every turn's prompt is the whole history plus a new
user message, and the reply is appended to the history. Per turn the engine hashes the prompt's
blocks, asks kvtierd how long a prefix is cached, loads it (checking every byte), "computes" the
rest (a deterministic fill with a simulated cost per token, not slept unless --sleep) and saves
the new blocks. At the end it prints the hit ratio and the prefill time saved.

    scripts/serve &                                   # in another shell
    PYTHONPATH=build/python python3 examples/chat_sim/chat_sim.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import kvtier


def fill(key: bytes, block_bytes: int) -> np.ndarray:
    """What the model would compute for a block: a function of its key only."""
    seed = int.from_bytes(key[:8], "little")
    return np.random.default_rng(seed).integers(0, 256, block_bytes, dtype=np.uint8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--socket", default=None, help="kvtierd socket ($KVTIER_SOCKET, ./var/kvtier.sock)")
    p.add_argument("--conversations", type=int, default=8)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--system-tokens", type=int, default=512)
    p.add_argument("--user-tokens", type=int, default=64)
    p.add_argument("--reply-tokens", type=int, default=96)
    p.add_argument("--us-per-token", type=float, default=250.0,
                   help="simulated prefill cost per token, microseconds")
    p.add_argument("--sleep", action="store_true", help="really sleep the simulated compute")
    p.add_argument("--model", default="chat-sim/toy-model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)

    client = kvtier.Client(args.socket)
    ns = client.register_namespace(model=args.model, num_layers=4, kv_heads=2, head_size=64,
                                   dtype="fp16", tokens_per_block=16)
    hasher = kvtier.PrefixHasher(ns)
    rng = np.random.default_rng(args.seed)
    system = rng.integers(0, 32000, args.system_tokens).tolist()
    histories = [list(system) for _ in range(args.conversations)]

    prompt_tokens = hit_tokens = 0
    compute_s = load_s = 0.0  # simulated compute of misses, measured load of hits
    mismatches = 0
    start = time.monotonic()
    for turn in range(args.turns):
        for conv in range(args.conversations):  # round-robin, as a server interleaves users
            prompt = histories[conv] + rng.integers(0, 32000, args.user_tokens).tolist()
            keys = hasher.hash(prompt)
            t0 = time.perf_counter()
            cached = client.lookup(ns, keys)
            bufs = np.empty((len(keys), ns.block_bytes), np.uint8)
            loaded = client.load(ns, keys[:cached], bufs[:cached]) if cached else 0
            load_s += time.perf_counter() - t0
            for i in range(loaded):
                if not np.array_equal(bufs[i], fill(keys[i], ns.block_bytes)):
                    mismatches += 1
            # "Compute" the rest of the prompt (the partial last block too).
            miss_tokens = len(prompt) - loaded * 16
            cost = miss_tokens * args.us_per_token / 1e6
            compute_s += cost
            if args.sleep:
                time.sleep(cost)
            for i in range(loaded, len(keys)):
                bufs[i] = fill(keys[i], ns.block_bytes)
            if loaded < len(keys):
                client.save(ns, keys[loaded:], bufs[loaded:],
                            parent=keys[loaded - 1] if loaded else None)
            prompt_tokens += len(prompt)
            hit_tokens += loaded * 16
            histories[conv] = prompt + rng.integers(0, 32000, args.reply_tokens).tolist()

    no_cache_s = prompt_tokens * args.us_per_token / 1e6
    summary = {
        "requests": args.conversations * args.turns,
        "prompt_tokens": prompt_tokens,
        "hit_tokens": hit_tokens,
        "hit_ratio": hit_tokens / prompt_tokens if prompt_tokens else 0.0,
        "prefill_s_without_cache": no_cache_s,
        "prefill_s_with_cache": compute_s + load_s,
        "time_saved_s": no_cache_s - compute_s - load_s,
        "load_s": load_s,
        "mismatched_blocks": mismatches,
        "wall_s": time.monotonic() - start,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"chat_sim: {summary['requests']} requests, {prompt_tokens} prompt tokens, "
              f"block {ns.block_bytes} bytes")
        print(f"  hit ratio      {summary['hit_ratio']:.1%} ({hit_tokens} tokens loaded)")
        print(f"  prefill        {no_cache_s:.3f} s without the cache, "
              f"{compute_s + load_s:.3f} s with it (loads took {load_s * 1e3:.1f} ms)")
        print(f"  time saved     {summary['time_saved_s']:.3f} s "
              f"({summary['time_saved_s'] / no_cache_s:.1%}) at {args.us_per_token:g} us/token")
        if mismatches:
            print(f"  MISMATCHED BLOCKS: {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
