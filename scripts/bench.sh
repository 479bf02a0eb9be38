#!/usr/bin/env bash
# The benchmark run of issue 6, in one command:
#   scripts/bench.sh            full run: our gateway and the Python 0.5.2 reference side by side
#   scripts/bench.sh --quick    smoke run: a handful of messages, our gateway only
# Extra arguments go to acg-bench (see `acg-bench --help`), e.g. --real-turns 0, --messages 50.
#
# Builds the release binaries (agent-chat-gateway, acg-stub-claude, acg-bench), installs
# agent-chat-gateway==0.5.2 from PyPI into .tools/acg-0.5.2 with python3.12 (skipped with a
# message when that is impossible), runs the harness, prints the table and writes
# target/bench/results.json. Micro-benchmarks are separate: see docs/performance.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

quick=0
for arg in "$@"; do
  [ "$arg" = "--quick" ] && quick=1
done

echo "building release binaries into $target" >&2
cargo build --release -p agent-chat-gateway -p acg-testkit -p acg-bench >&2

reference_args=()
if [ "$quick" = 0 ]; then
  venv="$root/.tools/acg-0.5.2"
  ref="$venv/bin/agent-chat-gateway"
  if [ ! -x "$ref" ]; then
    # python3.12 directly, else the one pyenv has (its shim refuses a version it was not told).
    py=""
    if python3.12 --version >/dev/null 2>&1; then
      py="python3.12"
    elif command -v pyenv >/dev/null 2>&1; then
      v="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | tail -n 1 || true)"
      if [ -n "$v" ] && PYENV_VERSION="$v" python3.12 --version >/dev/null 2>&1; then
        py="env PYENV_VERSION=$v python3.12"
      fi
    fi
    if [ -z "$py" ]; then
      reference_args=(--reference-skipped "python3.12 not found; cannot install agent-chat-gateway 0.5.2")
    else
      echo "installing agent-chat-gateway==0.5.2 into $venv" >&2
      if ! { $py -m venv "$venv" && "$venv/bin/pip" install --quiet agent-chat-gateway==0.5.2; } >&2; then
        reference_args=(--reference-skipped "pip install agent-chat-gateway==0.5.2 failed (see above)")
      fi
    fi
  fi
  if [ ${#reference_args[@]} -eq 0 ]; then
    reference_args=(--reference "$ref")
  fi
fi

mkdir -p "$root/target/bench"
exec "$target/release/acg-bench" \
  --gateway "$target/release/agent-chat-gateway" \
  --stub "$target/release/acg-stub-claude" \
  --out "$root/target/bench/results.json" \
  "${reference_args[@]}" "$@"
