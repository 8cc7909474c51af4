#!/usr/bin/env sh
# Type-check the web pages (client_web/*.js, JSDoc types, strict) with TypeScript's tsc: nothing
# is emitted. Installs the TypeScript of package.json into .tools/ at the repository root
# (git-ignored, and outside the folder the server serves) when it is missing. Needs node and npm;
# exits non-zero on a type error.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tools="$here/../.tools"
want=$(node -p "require('$here/package.json').devDependencies.typescript")
have=$(node -p "try { require('$tools/node_modules/typescript/package.json').version } catch { '' }")
if [ "$have" != "$want" ]; then
  npm install --prefix "$tools" --no-audit --no-fund --no-save --package-lock=false "typescript@$want" >&2
fi
exec "$tools/node_modules/.bin/tsc" -p "$here" "$@"
