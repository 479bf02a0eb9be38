#!/usr/bin/env bash
# Installs the pinned agent CLIs the tests drive into a project-local, git-ignored folder.
# Idempotent: a second run with the same pins does nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/.tools/npm"
# Pinned versions the test suite is checked against.
CLAUDE_CODE_VERSION="2.1.330"
mkdir -p "$prefix"
want="@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
have="$(node -e "try{console.log(require('$prefix/node_modules/@anthropic-ai/claude-code/package.json').version)}catch(e){}" 2>/dev/null || true)"
if [ "$have" != "$CLAUDE_CODE_VERSION" ] || ! "$prefix/node_modules/.bin/claude" --version >/dev/null 2>&1; then
  echo "installing $want into $prefix"
  npm install --no-audit --no-fund --loglevel=error --prefix "$prefix" "$want"
fi
"$prefix/node_modules/.bin/claude" --version

# --- OpenCode (acg-opencode tests) -------------------------------------------------------
# The pinned `opencode` CLI (a Bun single binary shipped in an optional dependency) into the
# same prefix, and ripgrep, which its grep/glob tools would otherwise download at run time.
OPENCODE_VERSION="1.18.33"
opencode_have="$(node -e "try{console.log(require('$prefix/node_modules/opencode-ai/package.json').version)}catch(e){}" 2>/dev/null || true)"
if [ "$opencode_have" != "$OPENCODE_VERSION" ] || ! "$prefix/node_modules/.bin/opencode" --version >/dev/null 2>&1; then
  echo "installing opencode-ai@$OPENCODE_VERSION into $prefix"
  npm install --no-audit --no-fund --loglevel=error --save-exact --prefix "$prefix" "opencode-ai@$OPENCODE_VERSION"
fi
"$prefix/node_modules/.bin/opencode" --version
if ! command -v rg >/dev/null 2>&1; then
  echo "installing ripgrep"
  # Refresh the package lists only when the first attempt cannot find the package.
  if ! apt-get install -y ripgrep; then
    apt-get update
    apt-get install -y ripgrep
  fi
fi
rg --version | sed -n 1p  # sed reads all input: no SIGPIPE under pipefail

# --- Rocket.Chat typings (acg-testkit fake Rocket.Chat conformance check) -------------------
# Rocket.Chat's published wire types and the TypeScript compiler that checks the fake's
# documents against them (crates/testkit/tests/rocketchat_typings.rs). core-typings 8.8.1
# declares typia as a Yarn "patch:" spec npm cannot read; the override pins the same version.
RC_TYPINGS_VERSION="8.8.1"
TYPESCRIPT_VERSION="5.9.3"
rc_have="$(node -e "try{const v=p=>require('$prefix/node_modules/'+p+'/package.json').version;console.log([v('@rocket.chat/core-typings'),v('@rocket.chat/rest-typings'),v('typescript')].join(' '))}catch(e){}" 2>/dev/null || true)"
if [ "$rc_have" != "$RC_TYPINGS_VERSION $RC_TYPINGS_VERSION $TYPESCRIPT_VERSION" ]; then
  echo "installing Rocket.Chat typings $RC_TYPINGS_VERSION and typescript $TYPESCRIPT_VERSION into $prefix"
  npm pkg set --prefix "$prefix" "overrides.typia=9.7.2"
  npm install --no-audit --no-fund --loglevel=error --save-exact --ignore-scripts --prefix "$prefix" \
    "@rocket.chat/core-typings@$RC_TYPINGS_VERSION" "@rocket.chat/rest-typings@$RC_TYPINGS_VERSION" \
    "typescript@$TYPESCRIPT_VERSION"
fi
"$prefix/node_modules/.bin/tsc" --version
