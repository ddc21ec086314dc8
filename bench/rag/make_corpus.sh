#!/usr/bin/env bash
# Builds the retrieval-quality corpus: the chapters and appendices of "The Rust Programming
# Language" (the current edition) as Debian's rust-doc package ships them (mdBook HTML), copied
# into DEST. The paths in bench/rag/questions.jsonl are relative to DEST.
#
#   bench/rag/make_corpus.sh DEST            # the pages as shipped
#   STRIP_SIDEBAR=1 bench/rag/make_corpus.sh DEST
#                                            # the same pages without mdBook's sidebar (the
#                                            # whole table of contents, repeated on every page)
#
# Needs the package: apt-get install -y rust-doc. Records the package version and the file
# list in DEST/.corpus-version (a hidden file, so ingestion skips it).
set -euo pipefail

dest=${1:?usage: make_corpus.sh DEST}
src=${RUST_DOC_HTML:-/usr/share/doc/rust-doc/html}/book
if [ ! -d "$src" ]; then
    echo "make_corpus.sh: $src is missing; install it with: apt-get install -y rust-doc" >&2
    exit 1
fi
version=$(dpkg-query -W -f='${Version}' rust-doc 2>/dev/null || echo unknown)

mkdir -p "$dest"
# Only this corpus's pages: remove what an earlier run left (pages of another version).
find "$dest" -maxdepth 1 -name '*.html' -delete
# ch*.html and appendix-*.html are the book; the other top-level pages are redirects left
# from the first edition, print.html repeats every chapter, and the *-edition folders are
# older editions.
( cd "$src" && ls ch[0-9]*.html appendix-*.html ) > "$dest/.corpus-files"
while read -r page; do
    cp "$src/$page" "$dest/$page"
done < "$dest/.corpus-files"

if [ "${STRIP_SIDEBAR:-0}" = 1 ]; then
    python3 - "$dest" <<'PY'
import pathlib, re, sys
sidebar = re.compile(r'<nav id="sidebar".*?</nav>', re.S)
for page in sorted(pathlib.Path(sys.argv[1]).glob("*.html")):
    text = page.read_text(encoding="utf-8")
    stripped, n = sidebar.subn("", text, count=1)
    if n != 1:
        sys.exit(f"{page}: no sidebar found")
    page.write_text(stripped, encoding="utf-8")
PY
fi

{
    echo "package: rust-doc $version"
    echo "source: $src (ch*.html, appendix-*.html)"
    echo "sidebar stripped: ${STRIP_SIDEBAR:-0}"
    echo "files: $(wc -l < "$dest/.corpus-files")"
    echo "bytes: $(cat "$dest"/*.html | wc -c)"
} > "$dest/.corpus-version"
cat "$dest/.corpus-version"
