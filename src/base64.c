/*
 * base64.c -- RFC 4648 section 4 base64. Written here rather than linked:
 * Debian's libb64 wraps its output every 72 characters (etcd rejects
 * that), and OpenSSL would bring in libcrypto for forty lines.
 */
#include "base64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t fb_base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

void fb_base64_encode(const unsigned char *src, size_t n, char *dst) {
  size_t i = 0;
  for (; i + 3 <= n; i += 3, dst += 4) {
    unsigned v = (unsigned)src[i] << 16 | (unsigned)src[i + 1] << 8 | src[i + 2];
    dst[0] = alphabet[v >> 18];
    dst[1] = alphabet[v >> 12 & 63];
    dst[2] = alphabet[v >> 6 & 63];
    dst[3] = alphabet[v & 63];
  }
  if (i == n)
    return;
  unsigned v = (unsigned)src[i] << 16;
  if (i + 1 < n)
    v |= (unsigned)src[i + 1] << 8;
  dst[0] = alphabet[v >> 18];
  dst[1] = alphabet[v >> 12 & 63];
  dst[2] = i + 1 < n ? alphabet[v >> 6 & 63] : '=';
  dst[3] = '=';
}

/* Returns the 6-bit value of c, or -1 if c is not in the alphabet. */
static int sextet(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  return c == '+' ? 62 : c == '/' ? 63 : -1;
}

long fb_base64_decode(const char *src, size_t n, unsigned char *dst) {
  if (n % 4)
    return -1;
  long out = 0;
  for (size_t i = 0; i < n; i += 4) {
    int last = i + 4 == n;
    int pad = last ? (src[i + 3] == '=') + (src[i + 2] == '=') : 0;
    if (pad == 1 && src[i + 2] == '=') /* "x=y=" */
      return -1;
    unsigned v = 0;
    for (int k = 0; k < 4 - pad; k++) {
      int s = sextet(src[i + k]);
      if (s < 0)
        return -1;
      v |= (unsigned)s << (18 - 6 * k);
    }
    dst[out++] = (unsigned char)(v >> 16);
    if (pad < 2)
      dst[out++] = (unsigned char)(v >> 8);
    if (pad < 1)
      dst[out++] = (unsigned char)v;
  }
  return out;
}
