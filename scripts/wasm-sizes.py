#!/usr/bin/env python3
"""Code size of the Worker's wasm by crate and module, from the release build's name section.

Run after `bash scripts/build-worker.sh` (which keeps the names in the cargo output; the
bundle's index_bg.wasm is stripped):

    python3 scripts/wasm-sizes.py [target/wasm32-unknown-unknown/release/hubspot_edge_worker.wasm]

Sizes are function bodies before wasm-opt (which shrinks the bundle by roughly a third), keyed by
the first path segment of each symbol (our crates by module too); generic code is keyed by its
impl (e.g. serde_json's Deserializer instantiated for our types). A guide to where the bytes
are, not an exact attribution. Only the standard library is used.
"""
import collections
import re
import sys

PATH = sys.argv[1] if len(sys.argv) > 1 else "target/wasm32-unknown-unknown/release/hubspot_edge_worker.wasm"
OURS = ("hubspot_edge_core", "hubspot_edge_worker")


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def read(path):
    data = open(path, "rb").read()
    i, imports, code, names = 8, 0, [], {}
    while i < len(data):
        sid = data[i]
        size, i = leb(data, i + 1)
        end = i + size
        if sid == 2:  # imports: function imports shift the function index space
            n, j = leb(data, i)
            for _ in range(n):
                for _ in range(2):
                    l, j = leb(data, j)
                    j += l
                kind = data[j]
                j += 1
                if kind == 0:
                    _, j = leb(data, j)
                    imports += 1
                elif kind == 1:
                    j += 1
                    flags, j = leb(data, j)
                    _, j = leb(data, j)
                    if flags & 1:
                        _, j = leb(data, j)
                elif kind == 2:
                    flags, j = leb(data, j)
                    _, j = leb(data, j)
                    if flags & 1:
                        _, j = leb(data, j)
                elif kind == 3:
                    j += 2
        elif sid == 10:  # code
            n, j = leb(data, i)
            for _ in range(n):
                l, k = leb(data, j)
                code.append(l + (k - j))
                j = k + l
        elif sid == 0:  # custom: the name section's function names
            l, j = leb(data, i)
            if data[j : j + l] == b"name":
                j += l
                while j < end:
                    sub = data[j]
                    ss, j = leb(data, j + 1)
                    if sub == 1:
                        n, k = leb(data, j)
                        for _ in range(n):
                            idx, k = leb(data, k)
                            l, k = leb(data, k)
                            names[idx] = data[k : k + l].decode("utf8", "replace")
                            k += l
                    j += ss
        i = end
    return imports, code, names


def segments(symbol):
    m = re.match(r"_ZN(.*)E$", symbol)
    if not m:
        return [symbol]
    s, out, i = m.group(1), [], 0
    while i < len(s):
        d = re.match(r"\d+", s[i:])
        if not d:
            break
        i += len(d.group(0))
        n = int(d.group(0))
        out.append(s[i : i + n])
        i += n
    return out


def main():
    imports, code, names = read(PATH)
    totals = collections.Counter()
    for n, size in enumerate(code):
        parts = segments(names.get(imports + n, "?"))
        key = parts[0] if parts else "?"
        if key in OURS and len(parts) > 1:
            key += "::" + parts[1]
        key = key.replace("_$LT$", "<").replace("$LT$", "<").replace("$GT$", ">").replace("$u20$", " ").replace("..", "::")
        totals[key] += size
    print(f"{sum(code):>9} bytes of code in {len(code)} functions ({PATH})")
    for key, size in totals.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 30):
        print(f"{size:>9} {key[:110]}")


main()
