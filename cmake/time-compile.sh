#!/bin/sh
# A compiler launcher that times each compile: runs the compile it is given and
# appends "<seconds> <source file>" to the file $SCALTRA_COMPILE_TIMES (an
# absolute path: each compile runs in its target's directory; default
# /tmp/scaltra-compile-times.txt). How README's build times were taken:
#
#   cmake --preset dev -B DIR -DCMAKE_CXX_COMPILER_LAUNCHER="$PWD/cmake/time-compile.sh"
#   SCALTRA_COMPILE_TIMES="$PWD/DIR/compile-times.txt" cmake --build DIR -j2
#   sort -rn DIR/compile-times.txt   # the largest files first; column 1 summed is the total
start=$(date +%s.%N)
"$@"
status=$?
end=$(date +%s.%N)
source=""
for arg in "$@"; do
    case "$arg" in *.cpp) source=$arg ;; esac
done
echo "$end $start $source" | awk '{ printf "%.1f %s\n", $1 - $2, $3 }' \
    >> "${SCALTRA_COMPILE_TIMES:-/tmp/scaltra-compile-times.txt}"
exit $status
