#!/bin/sh
# Installs the build in $1 into a temporary prefix, then builds tests/install_consumer against it twice:
# with pkg-config (static library) and with CMake's find_package (shared library). Both must run.
set -eu
build=$1; consumer=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
for f in include/attn.h include/attn/layers.h include/attn/data.h include/attn/seq2seq.h \
         include/attn/transformer.h include/attn/vit.h include/attn/detr.h include/attn/caption.h include/attn/safetensors.h include/attn/heatmap.h include/attn/plot.h lib/libattn.a lib/pkgconfig/attn.pc lib/cmake/attn/attnConfig.cmake; do
  [ -e "$tmp/prefix/$f" ] || { echo "install: missing $f"; exit 1; }
done
[ ! -e "$tmp/prefix/include/attn/imdb.h" ] || { echo "install: attn/imdb.h was folded into attn/data.h"; exit 1; }
# every header compiles on its own (each room includes what it needs)
for h in attn.h attn/layers.h attn/data.h attn/seq2seq.h attn/transformer.h attn/vit.h attn/detr.h attn/caption.h attn/safetensors.h attn/heatmap.h attn/plot.h; do
  printf '#include <%s>\n' "$h" | cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -I "$tmp/prefix/include" -x c - \
    || { echo "install: $h does not compile alone"; exit 1; }
done
ls "$tmp"/prefix/lib/libattn.so* > /dev/null || { echo "install: missing shared library"; exit 1; }
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc -std=c11 -o "$tmp/consumer_pc" "$consumer/consumer.c" $(pkg-config --cflags attn) \
   "$tmp/prefix/lib/libattn.a" $(pkg-config --static --libs-only-l attn | sed 's/-lattn//') -fopenmp
"$tmp/consumer_pc"
cmake -S "$consumer" -B "$tmp/cbuild" -DCMAKE_PREFIX_PATH="$tmp/prefix" > "$tmp/cmake.log"
cmake --build "$tmp/cbuild" > "$tmp/build.log"
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/cbuild/consumer"
passed=2
# libattn_mpi, when the build has it: attn/mpi.h alone, attn-mpi.pc (static) and attn::attn_mpi (shared)
if [ -e "$tmp/prefix/lib/libattn_mpi.a" ]; then
  for f in include/attn/mpi.h lib/pkgconfig/attn-mpi.pc lib/cmake/attn/attnMpiTargets.cmake; do
    [ -e "$tmp/prefix/$f" ] || { echo "install: missing $f"; exit 1; }
  done
  ls "$tmp"/prefix/lib/libattn_mpi.so* > /dev/null || { echo "install: missing libattn_mpi.so"; exit 1; }
  printf '#include <attn/mpi.h>\n' | cc -std=c11 -Wall -Wextra -Werror -fsyntax-only $(pkg-config --cflags attn-mpi) -x c - \
    || { echo "install: attn/mpi.h does not compile alone with attn-mpi.pc's flags"; exit 1; }
  cc -std=c11 -o "$tmp/consumer_mpi_pc" "$consumer/consumer_mpi.c" $(pkg-config --cflags attn-mpi) \
     "$tmp/prefix/lib/libattn_mpi.a" "$tmp/prefix/lib/libattn.a" \
     $(pkg-config --static --libs-only-l --libs-only-other attn-mpi | sed 's/-lattn_mpi//; s/-lattn//') -fopenmp
  "$tmp/consumer_mpi_pc"
  [ -x "$tmp/cbuild/consumer_mpi" ] || { echo "install: find_package(attn) gave no attn::attn_mpi"; exit 1; }
  LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/cbuild/consumer_mpi"
  passed=4
else
  echo "install: built without MPI: libattn_mpi not checked"
fi
echo "install: $passed passed, 0 failed"
