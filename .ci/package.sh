#!/usr/bin/env bash
# Publishable crates (issue 13 item 6). Fails when:
# - a crate a user installs or depends on lacks the metadata crates.io and docs.rs show
#   (description, license, repository, documentation, readme, keywords, categories), its readme
#   file is missing, or one of its path dependencies carries no `version` (cargo would refuse to
#   publish it);
# - another workspace member (an example) is publishable;
# - README.md's install lines are missing or hold a placeholder;
# - a doc comment of a published crate names a docs page (`docs/*.md`) without a link, or links
#   to it with a relative path (neither resolves on docs.rs);
# - a source file of one includes (`include_str!`) a file outside its crate;
# - `cargo package --no-verify` fails for any of them or warns (other than about the tests and
#   benchmarks the root crate leaves out on purpose).
set -euo pipefail
cd "$(dirname "$0")/.."

CRATES=(mcp-policy mcp-policy-cli mcp-policy-redis mcp-policy-rmcp mcp-policy-gateway)
REPOSITORY="https://github.com/mcp-policy/mcp-policy"
status=0

echo "== package metadata"
cargo metadata --no-deps --format-version 1 | python3 -c '
import json, os, sys
repository, published = sys.argv[1], set(sys.argv[2:])
bad = []
for p in json.load(sys.stdin)["packages"]:
    name = p["name"]
    if name not in published:
        if p.get("publish") != []:
            bad.append(f"{name}: not a published crate, so it needs `publish = false`")
        continue
    for field in ("description", "license", "repository", "documentation", "readme"):
        if not p.get(field):
            bad.append(f"{name}: no `{field}`")
    for field in ("keywords", "categories"):
        if not p.get(field):
            bad.append(f"{name}: no `{field}`")
    if len(p.get("keywords") or []) > 5:
        bad.append(f"{name}: more than 5 keywords (crates.io refuses them)")
    repo = p.get("repository")
    if repo and repo != repository:
        bad.append(f"{name}: `repository` is `{repo}`, not `{repository}`")
    readme = p.get("readme")
    if readme and not os.path.isfile(os.path.join(os.path.dirname(p["manifest_path"]), readme)):
        bad.append(f"{name}: the readme `{readme}` does not exist")
    for d in p["dependencies"]:
        dep = d["name"]
        if d.get("path") and d["kind"] != "dev" and d["req"] == "*":
            bad.append(f"{name}: the path dependency `{dep}` has no `version`")
for b in bad:
    print("error: " + b)
sys.exit(1 if bad else 0)
' "$REPOSITORY" "${CRATES[@]}" || status=1

echo "== README.md install lines, no placeholders"
for line in "cargo install mcp-policy-cli" "cargo add mcp-policy"; do
  grep -qF "$line" README.md || { echo "error: README.md does not say \`$line\`"; status=1; }
done
if grep -nE 'OWNER|<owner>|your-org' README.md docs/*.md; then
  echo "error: a placeholder in README.md or docs/ (above)"; status=1
fi

echo "== rustdoc links to docs pages"
# `docs/x.md` in backticks not followed by `]` is a mention without a link; `](docs/`, `](../`
# and `](./` are relative links. Reference-style definitions (`[...]: https://...`) are fine.
sources=(src crates/mcp-policy-cli/src crates/mcp-policy-redis/src crates/mcp-policy-rmcp/src
         crates/mcp-policy-gateway/src)
if grep -rnE '^\s*//[!/].*(`docs/[A-Za-z0-9_.-]+`[^]]|`docs/[A-Za-z0-9_.-]+`$|\]\((\.\.?/|docs/))' \
     --include='*.rs' "${sources[@]}"; then
  echo "error: a doc comment above names a docs page without an absolute link"; status=1
fi

echo "== files included by the published crates' sources stay inside their crate"
# `include_str!("../../..")` reaching the workspace, which a packaged crate does not have (its
# tests and doctests would not build from crates.io); a symlink inside the crate is packaged.
python3 - "${sources[@]}" <<'PY' || status=1
import os, re, sys
bad = 0
for src in sys.argv[1:]:
    crate = os.path.realpath(os.path.dirname(src.rstrip("/")) or ".")
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            for n, line in enumerate(open(path, encoding="utf-8"), 1):
                for rel in re.findall(r'include_(?:str|bytes)!\("([^"]+)"\)', line):
                    target = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), rel))
                    if not (target + os.sep).startswith(crate + os.sep):
                        print(f"{path}:{n}: includes `{rel}`, outside its crate")
                        bad = 1
if bad:
    print("error: an include above leaves its crate: link the file into the crate instead")
sys.exit(bad)
PY

echo "== cargo package --no-verify ($(cargo --version))"
args=()
for c in "${CRATES[@]}"; do args+=(-p "$c"); done
out=$(cargo package "${args[@]}" --no-verify --allow-dirty 2>&1) || {
  echo "$out"; echo "error: cargo package failed"; status=1
}
warnings=$(grep -E '^warning:' <<<"$out" \
  | grep -vE '^warning: ignoring (test|benchmark) `[^`]+` as `(tests|benches)/' || true)
if [ -n "$warnings" ]; then
  echo "$warnings"; echo "error: cargo package warned (above)"; status=1
fi
grep -E '^ +Packaged ' <<<"$out" || true

[ "$status" = 0 ] && echo "== publishable: ok"
exit "$status"
