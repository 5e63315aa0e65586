#!/usr/bin/env bash
# schemathesis (property-based API testing, from PyPI) against a devnet's
# /openapi.json: every answer must match the generated document (status
# codes, content types, response schemas), no call may answer 5xx for input
# the schema allows or forbids, and the server must refuse what the schema
# forbids. Not in .ci/run: with the build and the devnet it takes over two
# minutes (every key the fuzzer creates is a real DKG). Arguments go to
# `st run`; without any, the run recorded in docs/DESIGN.md "Typed REST contract".
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shardvault-ci-target}"
venv="$CARGO_TARGET_DIR/schemathesis-venv"
[ -x "$venv/bin/st" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements-schemathesis.txt
cargo build --locked -p shardvault --bin shardvault
dir="$(mktemp -d)"
"$CARGO_TARGET_DIR/debug/shardvault" devnet --dir "$dir/net" --nodes 3 >"$dir/devnet.log" 2>&1 &
devnet=$!
trap 'kill "$devnet" 2>/dev/null; wait "$devnet" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 300); do
    [ -s "$dir/net/devnet.json" ] && break
    sleep 0.2
done
api="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$dir/net/devnet.json")"
[ $# -gt 0 ] || set -- --max-time 90 --checks all \
    --exclude-checks positive_data_acceptance,ignored_auth,object_level_authorization
"$venv/bin/st" run "$api/openapi.json" "$@"
