/*
 * tls.h -- TLS as a codec over memory buffers, on OpenSSL (fb_tls_
 * prefix, internal).
 *
 * A session never touches a socket: ciphertext from the peer goes in with
 * fb_tls_feed() and plaintext comes out of fb_tls_read(); plaintext to
 * send goes in with fb_tls_write(), and the ciphertext it made (with
 * whatever the handshake, an alert or a close_notify produced) comes out
 * of fb_tls_take_output(). OpenSSL works between two memory BIOs, so no
 * call blocks and none knows of the loop; src/lua_tcp.c moves the bytes.
 * No Lua, no libuv.
 *
 * Memory is bounded by what the caller feeds: OpenSSL consumes what it
 * is given record by record and keeps at most one partial record (it
 * refuses a record longer than TLS allows), and the output holds what
 * the last calls made until it is taken.
 *
 * Functions that can fail return FB_TLS_FAILED and keep the reason for
 * fb_tls_error(): "certificate verify failed: self-signed certificate",
 * "tls handshake failed: wrong version number", "tls: tlsv13 alert
 * certificate required".
 */
#ifndef FB_TLS_H
#define FB_TLS_H

#include <stddef.h>

typedef struct ssl_ctx_st fb_tls_context; /* OpenSSL's SSL_CTX */
typedef struct fb_tls fb_tls;

/* What a context is made of. Files are PEM. */
typedef struct fb_tls_options {
  int server;            /* accepts (1) or connects (0) */
  const char *ca_file;   /* client: the CAs to trust instead of the system
                            store; server: the CAs a client certificate
                            must chain to, and one is then required */
  const char *cert_file; /* the certificate chain to present (a server's;
                            a client's for mutual TLS), or NULL */
  const char *key_file;  /* its private key (with cert_file) */
  int verify;            /* client: check the server's chain and name */
} fb_tls_options;

enum {
  FB_TLS_OK = 0,
  FB_TLS_AGAIN = -1,  /* needs more input from the peer */
  FB_TLS_FAILED = -2, /* see fb_tls_error(); the session is over */
  FB_TLS_CLOSED = -3  /* the peer sent close_notify */
};

/* Makes a context (TLS 1.2 and up). NULL with the reason in err (errlen
 * bytes): "cannot read cert_file 'x': No such file or directory". */
fb_tls_context *fb_tls_context_new(const fb_tls_options *o, char *err,
                                   size_t errlen);

/* Drops the caller's reference; sessions made from ctx keep theirs. */
void fb_tls_context_free(fb_tls_context *ctx);

/* A new session of ctx, or NULL when out of memory. host (client only,
 * may be NULL): the name the server's certificate must carry (an IP
 * literal is matched as an address) and, unless it is a literal, the
 * SNI name sent. */
fb_tls *fb_tls_new(fb_tls_context *ctx, const char *host);

void fb_tls_free(fb_tls *t);

/* Hands n bytes the peer sent to the session: FB_TLS_OK or
 * FB_TLS_FAILED (out of memory). */
int fb_tls_feed(fb_tls *t, const char *data, size_t n);

/* Advances the handshake on what was fed: FB_TLS_OK once done (at once
 * when it already was), FB_TLS_AGAIN, or FB_TLS_FAILED. */
int fb_tls_handshake(fb_tls *t);

/* Returns whether the handshake is done. */
int fb_tls_ready(const fb_tls *t);

/* Decrypts into buf (cap bytes): the count (> 0), FB_TLS_AGAIN when no
 * whole record is there, FB_TLS_CLOSED, or FB_TLS_FAILED. */
int fb_tls_read(fb_tls *t, char *buf, size_t cap);

/* Encrypts n bytes (after the handshake), all of them, into the
 * output: FB_TLS_OK or FB_TLS_FAILED. */
int fb_tls_write(fb_tls *t, const char *data, size_t n);

/* Queues a close_notify alert in the output (best effort). */
void fb_tls_shutdown(fb_tls *t);

/* The bytes of output waiting to be sent to the peer. */
size_t fb_tls_output_size(const fb_tls *t);

/* Moves up to cap bytes of output into buf; returns how many. */
size_t fb_tls_take_output(fb_tls *t, char *buf, size_t cap);

/* Why the last call failed ("" if none did). */
const char *fb_tls_error(const fb_tls *t);

/* The negotiated protocol ("TLSv1.3") and cipher, and the subject of the
 * peer's certificate (RFC 2253, into buf) or NULL when it sent none. */
const char *fb_tls_version(const fb_tls *t);
const char *fb_tls_cipher(const fb_tls *t);
const char *fb_tls_peer_subject(const fb_tls *t, char *buf, size_t cap);

#endif
