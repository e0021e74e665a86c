#!/usr/bin/env bash
# Builds meshport as it was at COMMIT in a git worktree at DIR, for the forward suite's baseline case:
#
#   packages/bench/scripts/baseline.sh DIR [COMMIT]      (COMMIT: 51d2e6b, the last commit before issue 19)
#   node packages/bench/dist/src/main.js forward --baseline DIR
#
# The worktree gets no `npm ci` (that would reinstall this checkout's node_modules through the workspace links): its
# node_modules links every package of this checkout's node_modules, but @meshport/*, which point at the worktree's own
# packages, so its router loads its own engine and protocol. Then `tsc --build` of the router (and what it references)
# and node-gyp for the engine's addon. Run again to rebuild; `git worktree remove --force DIR` removes it.
set -euo pipefail
dir=${1:?usage: baseline.sh DIR [COMMIT]}
commit=${2:-51d2e6b}
repo=$(cd "$(dirname "$0")/../../.." && pwd)

if [ ! -e "$dir/.git" ]; then
  git -C "$repo" worktree add --detach "$dir" "$commit"
else
  git -C "$dir" checkout --detach --quiet "$commit"
fi
dir=$(cd "$dir" && pwd)

# node_modules: every entry a link to this checkout's, but @meshport/* (relative links into the worktree itself).
rm -rf "$dir/node_modules"
mkdir -p "$dir/node_modules/@meshport"
for entry in "$repo"/node_modules/* "$repo"/node_modules/.bin; do
  name=$(basename "$entry")
  [ "$name" = "@meshport" ] || ln -s "$entry" "$dir/node_modules/$name"
done
for link in "$repo"/node_modules/@meshport/*; do
  ln -s "$(readlink "$link")" "$dir/node_modules/@meshport/$(basename "$link")"
done
# The packages' own node_modules (node-gyp and its helpers under packages/engine).
for nm in "$repo"/packages/*/node_modules; do
  pkg=$(basename "$(dirname "$nm")")
  [ -d "$dir/packages/$pkg" ] && [ ! -e "$dir/packages/$pkg/node_modules" ] && ln -s "$nm" "$dir/packages/$pkg/node_modules"
done

cd "$dir"
npx --no-install tsc --build packages/router
(cd packages/engine && npx --no-install node-gyp rebuild --nodedir=/usr >/dev/null)
echo "baseline at $(git -C "$dir" rev-parse --short HEAD) built in $dir"
