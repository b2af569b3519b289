/*
 * base64.h -- RFC 4648 base64 (standard alphabet, padded), for stores
 * that carry bytes as base64 in JSON (etcd's gateway). Pure: no I/O.
 */
#ifndef FB_BASE64_H
#define FB_BASE64_H

#include <stddef.h>

/* Returns the encoded length of n bytes (without a terminating NUL). */
size_t fb_base64_encoded_len(size_t n);

/* Encodes n bytes of src into dst (fb_base64_encoded_len(n) bytes, no
 * NUL written). */
void fb_base64_encode(const unsigned char *src, size_t n, char *dst);

/* Decodes n characters of src into dst (room for n / 4 * 3 bytes);
 * returns the decoded length, or -1 if src is not padded base64. */
long fb_base64_decode(const char *src, size_t n, unsigned char *dst);

#endif
