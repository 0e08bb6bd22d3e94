# fixtures.sh — small data sets the MPI tests make for themselves (sourced by dp_imdb.sh, dp_translate.sh),
# so they run on a machine without ../shared/data.

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
