#!/usr/bin/env bash
# Writes one seed per golden vector into fuzz/corpus/<target>/, and copies seeds/, so fuzzing starts from
# valid messages of every kind. request_open seeds get a leading method byte.
set -euo pipefail
cd "$(dirname "$0")"
python3 - <<'PY'
import os, re
text = open("../spec/vectors/protocol-v1.vec").read()
targets = {"header-open": "header_open", "header-confirm": "header_confirm",
           "header-update": "header_update", "request-open": "request_open",
           "response": "response", "trailers": "trailers", "reset": "reset"}
methods = {"http-get": 0, "http-post": 1, "http-options": 2, "http-connect": 3}
for block in text.split("\n\n"):
    fields, last = {}, None
    for line in block.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace():
            fields[last] += " " + line.strip()
        else:
            key, value = line.split(": ", 1)
            fields[key], last = value, key
    if not fields:
        continue
    data = bytes.fromhex("".join(fields["hex"].split()))
    target = targets[fields["message"]]
    if target == "request_open":
        data = bytes([methods.get(fields["channel-type"], 0)]) + data
        os.makedirs("corpus/channel_type", exist_ok=True)
        open(f"corpus/channel_type/{fields['name']}", "wb").write(fields["channel-type"].encode())
    os.makedirs(f"corpus/{target}", exist_ok=True)
    open(f"corpus/{target}/{fields['name']}", "wb").write(data)
PY
# The text parsers' seeds (and regression inputs) are kept in seeds/<target>/.
for dir in seeds/*/; do
    target=$(basename "$dir")
    mkdir -p "corpus/$target"
    cp "$dir"* "corpus/$target/"
done
