/*
 * standalone.c — runs a fuzz target without libFuzzer: every file named on the command line, or every
 * file inside a folder named there, is passed to LLVMFuzzerTestOneInput once. The tests use it to check
 * each harness on its seed corpus (crash reproducers included) with the ordinary compiler.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "%s: cannot open\n", path); return 1; }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *b = realloc(buf, cap *= 2);
            if (!b) { free(buf); buf = NULL; }
            buf = b;
        }
    }
    fclose(f);
    if (!buf) { fprintf(stderr, "%s: out of memory\n", path); return 1; }
    /* an exact-size copy, so that AddressSanitizer sees a read past the input */
    uint8_t *exact = malloc(n ? n : 1);
    if (exact && n) memcpy(exact, buf, n);
    free(buf);
    if (!exact) return 1;
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

int main(int argc, char **argv) {
    int runs = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat s;
        if (stat(argv[i], &s) != 0) { fprintf(stderr, "%s: no such file or folder\n", argv[i]); return 1; }
        if (!S_ISDIR(s.st_mode)) { bad |= run_file(argv[i]); runs++; continue; }
        DIR *d = opendir(argv[i]);
        if (!d) { fprintf(stderr, "%s: cannot open folder\n", argv[i]); return 1; }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
            bad |= run_file(path);
            runs++;
        }
        closedir(d);
    }
    printf("%s: %d inputs run%s\n", argv[0], runs, bad ? ", some could not be read" : "");
    return bad || runs == 0;
}
