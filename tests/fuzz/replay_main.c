/*
 * replay_main.c -- a main for a fuzz target without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on every file named, or on every file in
 * every directory named (sorted, dot files and README skipped). So
 * `make test` replays the corpora and crash inputs with the project's
 * own compiler and sanitizer build, and clang is needed only to fuzz.
 * Prints "N inputs" when all passed; a finding aborts, the input's name
 * printed first on stderr.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long replayed;

static void replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(1);
  }
  size_t cap = 4096, n = 0, got;
  uint8_t *data = malloc(cap);
  while (data && (got = fread(data + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap)
      data = realloc(data, cap *= 2);
  }
  if (!data || ferror(f)) {
    fprintf(stderr, "replay: cannot read %s\n", path);
    exit(1);
  }
  fclose(f);
  fprintf(stderr, "replay: %s\n", path);
  /* the input in a buffer of its exact size: ASan sees an over-read */
  uint8_t *exact = malloc(n ? n : 1);
  if (!exact) {
    fprintf(stderr, "replay: out of memory\n");
    exit(1);
  }
  memcpy(exact, data, n);
  free(data);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
  replayed++;
}

static int wanted(const struct dirent *e) {
  return e->d_name[0] != '.' && strcmp(e->d_name, "README") != 0;
}

static void replay_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    perror(path);
    exit(1);
  }
  if (!S_ISDIR(st.st_mode)) {
    replay_file(path);
    return;
  }
  struct dirent **names;
  int n = scandir(path, &names, wanted, alphasort);
  if (n < 0) {
    perror(path);
    exit(1);
  }
  for (int i = 0; i < n; i++) {
    char *p = malloc(strlen(path) + strlen(names[i]->d_name) + 2);
    if (!p) {
      fprintf(stderr, "replay: out of memory\n");
      exit(1);
    }
    sprintf(p, "%s/%s", path, names[i]->d_name);
    replay_path(p);
    free(p);
    free(names[i]);
  }
  free(names);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; i++)
    replay_path(argv[i]);
  printf("%ld inputs\n", replayed);
  return 0;
}
