# The installed library: `cmake --install` puts libperceiver.so/.a, the headers, perceiver.pc and
# the CMake package into a prefix; examples/c/classify.c builds against it with pkg-config and
# with find_package(perceiver), exports nothing but the pcv_* API, and classifies the bundled
# digits exactly like `perceiver-cl classify`.
. "$(dirname "$0")/clilib.sh"
SRC=${PCV_SOURCE_DIR:?}
BUILD=${PCV_BUILD_DIR:?}
P=$TMP/prefix

expect 0 '' -- cmake --install "$BUILD" --prefix "$P"
check '[ -f "$P/include/perceiver/perceiver.h" ] && [ -f "$P/include/perceiver/tasks.h" ]' "headers installed"
check 'ls "$P"/lib*/libperceiver.so* >/dev/null 2>&1 && ls "$P"/lib*/libperceiver.a >/dev/null 2>&1' "shared and static library installed"
LIB=$(dirname "$(ls "$P"/lib*/libperceiver.so | head -1)")
check '[ -f "$LIB/pkgconfig/perceiver.pc" ] && [ -f "$LIB/cmake/perceiver/perceiverConfig.cmake" ]' "pkg-config and CMake package files"
check '[ -f "$P/share/man/man1/perceiver-cl.1" ]' "man page installed"
check '[ -f "$P/share/bash-completion/completions/perceiver-cl" ] && [ -f "$P/share/zsh/site-functions/_perceiver-cl" ]' "bash and zsh completions installed"

# only the public API is exported
nm -D --defined-only "$LIB/libperceiver.so" | awk '{print $3}' >"$TMP/syms"
check '[ "$(grep -c . "$TMP/syms")" -gt 40 ]' "exported symbols listed"
check '! grep -vq "^pcv_" "$TMP/syms"' "a non-pcv_ symbol is exported: $(grep -v '^pcv_' "$TMP/syms" | head -3 | tr '\n' ' ')"
check '! grep -Eq "^(pcv_backend_|pcv_cl_|pcv_arena|pcv_param|pcv_set_error)" "$TMP/syms"' "library internals are exported"

# version macros agree with the library
export PKG_CONFIG_PATH=$LIB/pkgconfig
check '[ "$(pkg-config --modversion perceiver)" = "$("$BIN" --version | awk "NR == 1 {print \$2}")" ]' "pkg-config version differs from perceiver-cl --version"

cp "$SRC/examples/c/classify.c" "$SRC/examples/c/Makefile" "$SRC/examples/c/CMakeLists.txt" "$TMP/"
expect 0 '' -- make -C "$TMP" classify
mv "$TMP/classify" "$TMP/classify-pc"
expect 0 '' -- cmake -S "$TMP" -B "$TMP/cm" -DCMAKE_PREFIX_PATH="$P"
expect 0 '' -- cmake --build "$TMP/cm"

IMGS=("$SRC"/examples/digits/images/digit_*.png)
expect 0 '' -- "$BIN" classify -m "$SRC/examples/digits" --top 3 "${IMGS[@]}"
cp "$TMP/out" "$TMP/cli.txt"
for prog in "$TMP/classify-pc" "$TMP/cm/classify"; do
  expect 0 '' -- env LD_LIBRARY_PATH="$LIB" "$prog" "$SRC/examples/digits" "${IMGS[@]}"
  tail -n +2 "$TMP/out" >"$TMP/lib.txt"
  check 'diff -q "$TMP/cli.txt" "$TMP/lib.txt" >/dev/null' "$(basename "$prog"): library output differs from perceiver-cl classify"
  check 'head -1 "$TMP/out" | grep -q "perceiver-cl library [0-9]"' "version macro printed"
done
expect 1 'error: .*nothere' -- env LD_LIBRARY_PATH="$LIB" "$TMP/cm/classify" "$TMP/nothere" "${IMGS[0]}"
finish
