#!/usr/bin/env python3
"""Deterministic benchmark data for vikingsync (Python 3.11, stdlib only).

Writes N rows for a collection with the fields

    id     string   (primary key: "k0000000", "k0000001", ...; cycles over --keys distinct keys)
    title  string   (has a comma and a quote, so CSV quoting is exercised)
    score  float32  (exactly representable: multiples of 1/8)
    tags   list<string>
    vec    vector   (dimension --dim, default 128; elements are multiples of 1/64)

and, with --wide, three more (so six fields besides the key: title, score, tags, count, ok, at):

    count  int64     (-10^12 .. about 1.2 * 10^12: multiples of 1024 minus 10^12)
    ok     bool
    at     date_time (RFC 3339 in UTC, second precision, during 2026: "2026-03-14T07:21:05Z")

The --wide fields come from a second RNG stream, so the other columns are the same with and
without --wide. examples/gen_parquet.rs writes the same rows (same arguments, same values) as
Parquet: `cargo run --release --example gen_parquet -- --rows N --dim 768 --wide ...`.

as CSV (list and vector cells hold JSON arrays, the way vikingsync reads them) and/or JSONL,
optionally gzip-compressed (`.gz` is appended; level 1, for speed). Parquet is not written here (it
would need pyarrow): examples/gen_parquet.rs writes it.

The same arguments always give byte-identical files: a fixed-seed 64-bit LCG drives every
choice, and gzip output has mtime 0 and no file name. To keep generation fast (a 100k x 768
file is ~0.5 GB) each row picks its vector from a pool of --pool pre-rendered vectors; the
pool itself is random, so vectors differ between neighbouring rows.

    python3 bench/gen.py --rows 100000 --out /tmp/b/rows --format csv jsonl [--gzip] [--dim 768]

writes /tmp/b/rows.csv and /tmp/b/rows.jsonl (or .csv.gz / .jsonl.gz) and prints one line per
file: `path rows bytes`.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import io
import json
import os
import sys

MASK = (1 << 64) - 1
GZIP_LEVEL = 1  # fast; the reader's cost is inflate, which barely depends on the level


class Lcg:
    """Knuth's MMIX LCG; the high bits are used."""

    def __init__(self, seed: int) -> None:
        self.s = (seed * 6364136223846793005 + 1442695040888963407) & MASK

    def next(self) -> int:
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) & MASK
        return self.s >> 33

    def below(self, n: int) -> int:
        return self.next() % n


def fmt_num(x: float) -> str:
    # Shortest exact text; integers without ".0" are fine for both JSON and float32 parsing.
    r = repr(x)
    return r[:-2] if r.endswith(".0") else r


def vector_pool(rng: Lcg, dim: int, size: int) -> list[str]:
    pool = []
    for _ in range(size):
        vals = ((rng.below(2049) - 1024) / 64.0 for _ in range(dim))
        pool.append("[" + ",".join(fmt_num(v) for v in vals) + "]")
    return pool


# The --wide stream: its own seed, so the base columns do not change with --wide.
WIDE_SEED_OFFSET = 0x5EED
AT_EPOCH = 1767225600  # 2026-01-01T00:00:00Z
AT_SPAN = 365 * 86400


def wide_fields(rng: Lcg) -> tuple[int, bool, str]:
    """(count, ok, at) of one row, drawn in this order."""
    count = rng.next() * 1024 - 10**12
    ok = rng.below(2) == 1
    t = AT_EPOCH + rng.below(AT_SPAN)
    at = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return count, ok, at


WORDS = ["alpha", "beta", "gamma", "delta", "north", "south", "red", "blue", "北京", "上海"]


def rows(n: int, keys: int, dim: int, seed: int, pool_size: int, wide: bool = False):
    """Yields (id, title, score_text, tags_json, vec_json) for every row, and with `wide`
    (id, title, score_text, tags_json, vec_json, count, ok, at)."""
    rng = Lcg(seed)
    rng2 = Lcg(seed + WIDE_SEED_OFFSET)
    pool = vector_pool(rng, dim, pool_size)
    for i in range(n):
        k = i % keys
        w1 = WORDS[rng.below(len(WORDS))]
        w2 = WORDS[rng.below(len(WORDS))]
        title = f'{w1} {w2}, item "{rng.below(100000)}"'
        score = fmt_num((rng.below(16001) - 8000) / 8.0)
        ntags = 1 + rng.below(3)
        tags = json.dumps([f"t{rng.below(50)}" for _ in range(ntags)], separators=(",", ":"))
        vec = pool[rng.below(pool_size)]
        if wide:
            yield (f"k{k:07d}", title, score, tags, vec, *wide_fields(rng2))
        else:
            yield f"k{k:07d}", title, score, tags, vec


def csv_cell(s: str) -> str:
    if any(c in s for c in ',"\n\r'):
        return '"' + s.replace('"', '""') + '"'
    return s


def open_out(path: str, gz: bool):
    if gz:
        raw = open(path, "wb")
        z = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL)
        return io.TextIOWrapper(z, encoding="utf-8", newline=""), (z, raw)
    f = open(path, "w", encoding="utf-8", newline="")
    return f, ()


def write(path: str, fmt: str, gz: bool, args) -> int:
    out, extra = open_out(path, gz)
    buf: list[str] = []
    if fmt == "csv":
        buf.append("id,title,score,tags,vec,count,ok,at\n" if args.wide else "id,title,score,tags,vec\n")
    for row in rows(args.rows, args.keys or args.rows, args.dim, args.seed, args.pool, args.wide):
        rid, title, score, tags, vec = row[:5]
        if fmt == "csv":
            # The vector is a JSON array with commas: always quoted.
            line = f'{rid},{csv_cell(title)},{score},{csv_cell(tags)},"{vec}"'
            if args.wide:
                count, ok, at = row[5:]
                line += f",{count},{'true' if ok else 'false'},{at}"
            buf.append(line + "\n")
        else:
            t = json.dumps(title, ensure_ascii=False)
            more = ""
            if args.wide:
                count, ok, at = row[5:]
                more = f',"count":{count},"ok":{"true" if ok else "false"},"at":"{at}"'
            buf.append(f'{{"id":"{rid}","title":{t},"score":{score},"tags":{tags},"vec":{vec}{more}}}\n')
        if len(buf) >= 2000:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))
    out.close()
    for f in extra:
        f.close()
    return os.path.getsize(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, required=True, help="rows to write")
    p.add_argument("--out", required=True, help="output path without extension")
    p.add_argument("--format", nargs="+", choices=["csv", "jsonl"], default=["csv"])
    p.add_argument("--gzip", action="store_true", help="gzip the output (adds .gz)")
    p.add_argument("--dim", type=int, default=128, help="vector dimension (default 128)")
    p.add_argument("--keys", type=int, default=0, help="distinct primary keys (default: one per row)")
    p.add_argument("--seed", type=int, default=1, help="RNG seed (default 1)")
    p.add_argument("--pool", type=int, default=1024, help="distinct vectors (default 1024)")
    p.add_argument("--wide", action="store_true", help="also count (int64), ok (bool), at (date_time)")
    args = p.parse_args()
    if args.rows < 0 or args.dim < 1 or args.keys < 0 or args.pool < 1:
        p.error("rows >= 0, dim >= 1, keys >= 0, pool >= 1")
    d = os.path.dirname(args.out)
    if d:
        os.makedirs(d, exist_ok=True)
    for fmt in args.format:
        path = f"{args.out}.{fmt}" + (".gz" if args.gzip else "")
        size = write(path, fmt, args.gzip, args)
        print(f"{path} {args.rows} {size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
