#!/usr/bin/env bash
# The engine binary faced with broken plugins on ENGINE_PLUGIN_PATH: a plugin declaring ABI major 2, a newer
# minor, a library without the entry symbol, a non-ELF file and a duplicate name. Each is refused with a message
# naming the file (and both versions), the good plugins still load, and nothing crashes.
# Usage: bad_plugins_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
engine="$build/bin/engine"
bad="$build/tests/plugins/bad"
echo "not a plugin" >"$tmp/libtext.so"
export ENGINE_PLUGIN_PATH="$bad/abi_major:$bad/abi_minor:$bad/no_entry:$tmp:$build/tests/plugins/good:$bad/duplicate"

set +e
"$engine" plugins --json >"$tmp/out" 2>"$tmp/err"
rc=$?
set -e
[[ $rc -eq 0 ]] || { echo "engine plugins exited $rc"; cat "$tmp/err"; exit 1; }
grep -q '"name": "fake_sgd"' "$tmp/out"
check() { grep -qF -- "$1" "$tmp/err" || { echo "missing in the warnings: $1"; cat "$tmp/err"; exit 1; }; }
check "$bad/abi_major/libfuture_sgd.so"
check "plugin 'future_sgd' uses plugin ABI 2.0 but this engine speaks ABI 1.0 to 1.1"
check "rebuild the plugin against the SDK of this engine"
check "$bad/abi_minor/libnewer_sgd.so"
check "upgrade the engine"
check "$bad/no_entry/libno_entry.so"
check "does not export 'engine_plugin_negotiate'"
check "$tmp/libtext.so"
check "not a shared library"
check "duplicate optimizer plugin name 'fake_sgd'"
check "already loaded from $build/tests/plugins/good/libfake_sgd.so"

# A recipe naming the refused plugin: exit 2, and the message points at the refused file.
printf 'include = "%s"\n[optimizer]\nplugin = "future_sgd"\nlr = 0.1\n' "$src/tests/data/recipe/base.toml" >"$tmp/r.toml"
set +e
"$engine" validate "$tmp/r.toml" >"$tmp/vout" 2>&1
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "validate exited $rc"; cat "$tmp/vout"; exit 1; }
grep -q "no optimizer plugin named 'future_sgd'" "$tmp/vout"
grep -q "libfuture_sgd.so" "$tmp/vout"
grep -q "ABI 2.0" "$tmp/vout"
# Plugins that load but are not built as the SDK says: one warning each, naming the file, in `engine plugins`
# (and in the log of a run, which loads them the same way).
warn="$build/tests/plugins/warn"
ENGINE_PLUGIN_PATH="$warn/schema:$warn/exports" "$engine" plugins >"$tmp/wout" 2>"$tmp/werr"
grep -q "broken_schema_sgd" "$tmp/wout" && grep -q "exporting_sgd" "$tmp/wout"
wcheck() {
  [[ $(grep -cF -- "$1" "$tmp/werr") -eq 1 ]] || { echo "not logged once: $1"; cat "$tmp/werr"; exit 1; }
  grep -qF -- "$1" "$tmp/wout" || { echo "not listed: $1"; cat "$tmp/wout"; exit 1; }
}
wcheck "its options schema is not valid JSON"
grep -qF "$warn/schema/libbroken_schema_sgd.so" "$tmp/werr"
wcheck "symbols ("
grep -qF "$warn/exports/libexporting_sgd.so" "$tmp/werr"
# (into a file: `grep -q` on a pipe exits at the first match, and under pipefail the engine's SIGPIPE on the rest
# of its output failed the test once the listing grew)
ENGINE_PLUGIN_PATH="$warn/schema:$warn/exports" "$engine" plugins --json >"$tmp/wjson"
grep -q '"warnings": \[$' "$tmp/wjson"
[[ $(ENGINE_PLUGIN_PATH="$build/tests/plugins/good" "$engine" plugins 2>&1 | grep -c "warning") -eq 0 ]] ||
  { echo "a plugin built with the SDK got a warning"; exit 1; }
echo "ok: every broken plugin refused with its file and versions; sloppy ones warned about once"
