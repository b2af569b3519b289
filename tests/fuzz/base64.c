/*
 * base64.c -- fuzz target for src/base64.c: whatever decodes re-encodes
 * to a text that decodes to the same bytes, never writing past n / 4 * 3
 * bytes; any bytes encode to a text of the promised length that decodes
 * back to them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void finding(const char *what) {
  fprintf(stderr, "fuzz: base64: %s\n", what);
  abort();
}

/* bytes -> text -> the same bytes */
static void encode_round_trip(const uint8_t *data, size_t size) {
  size_t n = fb_base64_encoded_len(size);
  char *text = malloc(n + 1);
  unsigned char *back = malloc(n / 4 * 3 + 1);
  if (!text || !back)
    finding("out of memory");
  fb_base64_encode(data, size, text);
  long m = fb_base64_decode(text, n, back);
  if (m != (long)size || memcmp(back, data, size) != 0)
    finding("decode(encode(bytes)) differs from the bytes");
  free(text);
  free(back);
}

/* text -> bytes -> canonical text -> the same bytes */
static void decode_round_trip(const uint8_t *data, size_t size) {
  /* exactly n / 4 * 3 bytes: ASan catches a write past the promise */
  size_t cap = size / 4 * 3;
  unsigned char *bytes = malloc(cap ? cap : 1);
  if (!bytes)
    finding("out of memory");
  long m = fb_base64_decode((const char *)data, size, bytes);
  if (m < -1 || m > (long)cap)
    finding("decoded length out of range");
  if (m >= 0) {
    size_t n = fb_base64_encoded_len((size_t)m);
    char *text = malloc(n + 1);
    unsigned char *again = malloc(n / 4 * 3 + 1);
    if (!text || !again)
      finding("out of memory");
    fb_base64_encode(bytes, (size_t)m, text);
    if (fb_base64_decode(text, n, again) != m ||
        memcmp(again, bytes, (size_t)m) != 0)
      finding("decode(encode(decode(text))) differs from decode(text)");
    free(text);
    free(again);
  }
  free(bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  encode_round_trip(data, size);
  decode_round_trip(data, size);
  return 0;
}
