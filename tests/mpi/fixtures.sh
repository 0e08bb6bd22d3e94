# fixtures.sh — small data sets the MPI tests make for themselves (sourced by dp_imdb.sh, dp_translate.sh,
# dp_vision.sh, dp_caption.sh, dp_detect.sh), so they run on a machine without ../shared/data; and the image
# models' shared checks.

# imdb_fixture DIR N: DIR/aclImdb/{train,test}/{pos,neg} with N one-line reviews each, words drawn
# deterministically from a small list so that the vocabulary and the labels are learnable.
imdb_fixture() {
  awk -v dir="$1" -v n="$2" 'BEGIN {
    split("film movie story actor plot scene music ending cast script", w, " ");
    split("good great superb moving fine", p, " "); split("bad awful boring weak dull", q, " ");
    s = 11;
    for (k = 0; k < 4; k++) {
      split_ = (k < 2) ? "train" : "test"; label = (k % 2) ? "neg" : "pos";
      d = dir "/aclImdb/" split_ "/" label; system("mkdir -p " d);
      for (i = 0; i < n; i++) {
        line = "the";
        for (j = 0; j < 6 + i % 9; j++) {
          s = (s * 1103 + 12345) % 65521;
          line = line " " ((s % 3 == 0) ? ((label == "pos") ? p[s % 5 + 1] : q[s % 5 + 1]) : w[s % 10 + 1]);
        }
        f = d "/" i "_" ((label == "pos") ? 8 : 2) ".txt"; print line > f; close(f);
      }
    } }'
}

# fra_fixture DIR N: DIR/fra-eng/fra.txt with N English-French pairs over twelve numbers.
fra_fixture() {
  mkdir -p "$1/fra-eng"
  awk -v n="$2" 'BEGIN { split("one two three four five six seven eight nine ten eleven twelve", en, " ");
    split("un deux trois quatre cinq six sept huit neuf dix onze douze", fr, " "); s = 7;
    for (i = 0; i < n; i++) {
      a = (s % 12) + 1; s = (s * 31 + 11) % 997; b = (s % 12) + 1; s = (s * 31 + 11) % 997;
      printf "%s%s %s.\t%s%s %s.\tfixture\n", toupper(substr(en[a],1,1)), substr(en[a],2), en[b],
             toupper(substr(fr[a],1,1)), substr(fr[a],2), fr[b] } }' > "$1/fra-eng/fra.txt"
}

# fmnist_fixture DIR N: DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, N 28x28 images per split with
# pixels and labels (0..9) from a fixed sequence, gzip IDX as Debian ships Fashion-MNIST.
fmnist_fixture() {
  mkdir -p "$1"
  for s in train t10k; do
    LC_ALL=C awk -v n="$2" -v seed="$([ $s = train ] && echo 3 || echo 5)" 'BEGIN {
      printf "%c%c%c%c", 0, 0, 8, 3; printf "%c%c%c%c%c%c%c%c%c%c%c%c", 0, 0, int(n / 256), n % 256, 0, 0, 0, 28, 0, 0, 0, 28;
      s = seed; for (i = 0; i < n * 784; i++) { s = (s * 1103 + 12345) % 65521; printf "%c", s % 256 } }' |
      LC_ALL=C gzip > "$1/$s-images-idx3-ubyte.gz"
    LC_ALL=C awk -v n="$2" 'BEGIN { printf "%c%c%c%c%c%c%c%c", 0, 0, 8, 1, 0, 0, int(n / 256), n % 256;
      for (i = 0; i < n; i++) printf "%c", (i * 7) % 10 }' | LC_ALL=C gzip > "$1/$s-labels-idx1-ubyte.gz"
  done
}

# Checks shared by the image models' data-parallel tests (dp_vision.sh, dp_caption.sh, dp_detect.sh); each
# prints "TAG: ...: ok" or a FAIL line and sets fail=1 on failure.
# dp_same TAG WHAT FILE1 FILE2: the two files byte for byte
dp_same() {
  if cmp -s "$3" "$4"; then echo "$1: $2: ok"; else echo "$1: $2: FAIL"; fail=1; fi
}
# dp_rank0_writes TAG LOG HISTORY LINES: under 2 ranks only rank 0 writes: HISTORY has LINES lines (header
# included) and LOG says data parallel and holds one line of the first epoch ("Epoch 1/2 - ")
dp_rank0_writes() {
  grep -q "data parallel: 2 ranks" "$2" || { echo "$1: 2 ranks: the log does not say data parallel"; fail=1; }
  rows=$(wc -l < "$3")
  [ "$rows" -eq "$4" ] || { echo "$1: history has $rows lines, want $4"; fail=1; }
  lines=$(grep -c "^Epoch 1/2 - " "$2")
  [ "$lines" -eq 1 ] || { echo "$1: 2 ranks printed $lines epoch lines, want 1 (rank 0 only)"; fail=1; }
}
# dp_refuses_3 TAG LOG MPIRUN ATTN ARGS...: 3 ranks (not dividing a batch's 2 shards) refused, saying why
dp_refuses_3() {
  tag=$1; log=$2; run=$3; shift 3
  if $run -np 3 "$@" > "$log" 2>&1; then
    echo "$tag: 3 ranks were not refused"; fail=1
  elif ! grep -q "3 ranks do not divide the 2 shards" "$log"; then
    echo "$tag: 3 ranks: no message saying why:"; cat "$log"; fail=1
  else
    echo "$tag: 3 ranks refused: ok"
  fi
}
