# The man page, the shell completions and the README agree with the program: the man page is
# generated from the option tables that also make the parser and --help ('perceiver-cl help
# --man'), and must be current; the completions ask the program for commands and options.
. "$(dirname "$0")/clilib.sh"
SRC=${PCV_SOURCE_DIR:?}

# docs/perceiver-cl.1 is what the program generates (regenerate: build/perceiver-cl help --man >docs/perceiver-cl.1)
expect 0 '' -- "$BIN" help --man
check 'cmp -s "$TMP/out" "$SRC/docs/perceiver-cl.1"' "docs/perceiver-cl.1 is stale: run 'build/perceiver-cl help --man >docs/perceiver-cl.1'"
for c in $("$BIN" help --commands); do
  rc_name=$(printf '%s' "$c" | sed 's/-/\\\\-/g')
  check 'grep -q "^\.SS \"perceiver\\\\-cl $rc_name " "$SRC/docs/perceiver-cl.1"' "the man page has no section for $c"
  check 'grep -Eq "^perceiver-cl $c +[^ ]" "$SRC/README.md"' "README's command list lacks $c"
  for o in $("$BIN" help --options "$c" | awk '{print $1}'); do
    check 'grep -q -- "$o" <("$BIN" $c --help)' "$c --help lacks $o"
  done
done
if command -v groff >/dev/null; then
  groff -man -Tutf8 -ww -z "$SRC/docs/perceiver-cl.1" 2>"$TMP/groff"
  check '[ ! -s "$TMP/groff" ]' "groff warns about the man page: $(head -2 "$TMP/groff")"
fi

# bash completion: commands, options, option values, help's argument
cat >"$TMP/comp.sh" <<EOS
source "$SRC/contrib/completion/perceiver-cl.bash"
t() { COMP_WORDS=("\$@"); COMP_CWORD=\$(( \${#COMP_WORDS[@]} - 1 )); _perceiver_cl; echo "\${COMPREPLY[*]}"; }
t "$BIN" cl
t "$BIN" fill --mo
t "$BIN" fill --numerics ""
t "$BIN" bench -o ""
t "$BIN" bench --output=c
t "$BIN" help bench
t "$BIN" classify --thres
EOS
bash "$TMP/comp.sh" >"$TMP/comp.out" 2>&1
check '[ "$(sed -n 1p "$TMP/comp.out")" = "classify" ]' "bash: command"
check '[ "$(sed -n 2p "$TMP/comp.out")" = "--model" ]' "bash: option"
check '[ "$(sed -n 3p "$TMP/comp.out")" = "hf haiku" ]' "bash: --numerics values"
check '[ "$(sed -n 4p "$TMP/comp.out")" = "md csv json" ]' "bash: -o values"
check '[ "$(sed -n 5p "$TMP/comp.out")" = "--output=csv" ]' "bash: --output=VALUE"
check '[ "$(sed -n 6p "$TMP/comp.out")" = "bench bench-ops" ]' "bash: help COMMAND"
check '[ "$(sed -n 7p "$TMP/comp.out")" = "--threshold" ]' "bash: a new option is completed"
if command -v zsh >/dev/null; then
  check 'zsh -n "$SRC/contrib/completion/_perceiver-cl"' "zsh completion: syntax"
fi
finish
