/*
 * tls.c -- TLS sessions between memory BIOs (see tls.h).
 *
 * OpenSSL's error queue is per thread and outlives the call that filled
 * it, so every operation starts by clearing it and ends, on failure, by
 * turning it into one message and clearing it again: no reason can leak
 * into another session's error.
 */
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct fb_tls {
  SSL *ssl;  /* reads the peer's ciphertext from its rbio, writes its
                own to its wbio: two memory BIOs */
  int ready; /* the handshake succeeded (OpenSSL forgets it on an alert) */
  char error[256];
};

/* ------------------------------------------------------------ contexts */

/* The reason of the newest OpenSSL error, or fallback. */
static const char *ssl_reason(const char *fallback) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : fallback;
}

/* Fails unless path can be opened, naming the option and errno's reason:
 * OpenSSL's own message for a missing file is "system lib". */
static int readable(const char *what, const char *path, char *err,
                    size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot read %s '%s': %s", what, path,
             strerror(errno));
    return 0;
  }
  fclose(f);
  return 1;
}

static int load_files(SSL_CTX *ctx, const fb_tls_options *o, char *err,
                      size_t errlen) {
  if (o->ca_file) {
    if (!readable("ca_file", o->ca_file, err, errlen))
      return 0;
    if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
      snprintf(err, errlen, "cannot load ca_file '%s': %s", o->ca_file,
               ssl_reason("no certificate in it"));
      return 0;
    }
  } else if (!o->server && SSL_CTX_set_default_verify_paths(ctx) != 1) {
    snprintf(err, errlen, "cannot load the system CA store: %s",
             ssl_reason("unknown error"));
    return 0;
  }
  if (o->cert_file) {
    if (!readable("cert_file", o->cert_file, err, errlen) ||
        !readable("key_file", o->key_file, err, errlen))
      return 0;
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
      snprintf(err, errlen, "cannot load cert_file '%s': %s", o->cert_file,
               ssl_reason("no certificate in it"));
      return 0;
    }
    int loaded = SSL_CTX_use_PrivateKey_file(ctx, o->key_file,
                                             SSL_FILETYPE_PEM) == 1;
    if (!loaded &&
        ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
      snprintf(err, errlen, "cannot load key_file '%s': %s", o->key_file,
               ssl_reason("no key in it"));
      return 0;
    }
    if (!loaded || SSL_CTX_check_private_key(ctx) != 1) {
      snprintf(err, errlen, "key_file '%s' does not match cert_file '%s'",
               o->key_file, o->cert_file);
      return 0;
    }
  }
  return 1;
}

fb_tls_context *fb_tls_context_new(const fb_tls_options *o, char *err,
                                   size_t errlen) {
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(o->server ? TLS_server_method()
                                       : TLS_client_method());
  if (!ctx) {
    snprintf(err, errlen, "cannot make a TLS context: %s",
             ssl_reason("out of memory"));
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* Renegotiation is a peer-driven handshake in the middle of a stream:
   * nothing here needs it, so it is not on offer. Idle sessions give
   * their read and write buffers back (a pool keeps many). */
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (!load_files(ctx, o, err, errlen)) {
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
  }
  if (o->server) {
    if (o->ca_file) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
      if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                         NULL);
    }
  } else {
    SSL_CTX_set_verify(ctx, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                       NULL);
  }
  ERR_clear_error();
  return ctx;
}

void fb_tls_context_free(fb_tls_context *ctx) { SSL_CTX_free(ctx); }

/* ------------------------------------------------------------ sessions */

/* Names host as the identity the server's certificate must carry. */
static int expect_host(SSL *ssl, const char *host) {
  X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
  if (X509_VERIFY_PARAM_set1_ip_asc(p, host) == 1)
    return 1; /* an IP literal: no SNI (RFC 6066, 3) */
  X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return X509_VERIFY_PARAM_set1_host(p, host, 0) == 1 &&
         SSL_set_tlsext_host_name(ssl, host) == 1;
}

fb_tls *fb_tls_new(fb_tls_context *ctx, const char *host) {
  ERR_clear_error();
  fb_tls *t = calloc(1, sizeof *t);
  BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
  SSL *ssl = t && in && out ? SSL_new(ctx) : NULL;
  if (!ssl) {
    BIO_free(in);
    BIO_free(out);
    free(t);
    ERR_clear_error();
    return NULL;
  }
  BIO_set_mem_eof_return(in, -1); /* empty: "retry", not end of stream */
  SSL_set_bio(ssl, in, out);      /* ssl owns them now */
  t->ssl = ssl;
  if (SSL_is_server(ssl)) {
    SSL_set_accept_state(ssl);
  } else {
    SSL_set_connect_state(ssl);
    if (host && !expect_host(ssl, host)) {
      fb_tls_free(t);
      ERR_clear_error();
      return NULL;
    }
  }
  return t;
}

void fb_tls_free(fb_tls *t) {
  if (!t)
    return;
  SSL_free(t->ssl);
  free(t);
}

/* Records why the operation that returned ret failed, and returns
 * FB_TLS_FAILED. */
static int failed(fb_tls *t, int ret) {
  int ready = t->ready;
  long v = SSL_get_verify_result(t->ssl);
  int e = SSL_get_error(t->ssl, ret);
  if (!ready && v != X509_V_OK)
    snprintf(t->error, sizeof t->error, "certificate verify failed: %s",
             X509_verify_cert_error_string(v));
  else
    snprintf(t->error, sizeof t->error, "%s: %s",
             ready ? "tls" : "tls handshake failed",
             e == SSL_ERROR_SSL ? ssl_reason("protocol error")
                                : "protocol error");
  ERR_clear_error();
  return FB_TLS_FAILED;
}

int fb_tls_feed(fb_tls *t, const char *data, size_t n) {
  ERR_clear_error();
  size_t written;
  if (n && (BIO_write_ex(SSL_get_rbio(t->ssl), data, n, &written) != 1 || written != n)) {
    snprintf(t->error, sizeof t->error, "tls: out of memory");
    ERR_clear_error();
    return FB_TLS_FAILED;
  }
  return FB_TLS_OK;
}

int fb_tls_handshake(fb_tls *t) {
  if (t->ready)
    return FB_TLS_OK;
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->ready = 1;
    return FB_TLS_OK;
  }
  if (SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_READ)
    return FB_TLS_AGAIN;
  return failed(t, r);
}

int fb_tls_ready(const fb_tls *t) { return t->ready; }

int fb_tls_read(fb_tls *t, char *buf, size_t cap) {
  ERR_clear_error();
  size_t n = 0;
  int r = SSL_read_ex(t->ssl, buf, cap < INT_MAX ? cap : INT_MAX, &n);
  if (r == 1)
    return (int)n;
  switch (SSL_get_error(t->ssl, r)) {
  case SSL_ERROR_WANT_READ:
    return FB_TLS_AGAIN;
  case SSL_ERROR_ZERO_RETURN:
    return FB_TLS_CLOSED;
  default:
    return failed(t, r);
  }
}

int fb_tls_write(fb_tls *t, const char *data, size_t n) {
  ERR_clear_error();
  size_t done = 0;
  if (n == 0)
    return FB_TLS_OK;
  int r = SSL_write_ex(t->ssl, data, n, &done);
  if (r == 1 && done == n)
    return FB_TLS_OK;
  return failed(t, r);
}

void fb_tls_shutdown(fb_tls *t) {
  ERR_clear_error();
  if (t->ready && SSL_is_init_finished(t->ssl))
    SSL_shutdown(t->ssl);
  ERR_clear_error();
}

size_t fb_tls_output_size(const fb_tls *t) {
  return BIO_ctrl_pending(SSL_get_wbio(t->ssl));
}

size_t fb_tls_take_output(fb_tls *t, char *buf, size_t cap) {
  size_t n = 0;
  if (cap && BIO_read_ex(SSL_get_wbio(t->ssl), buf, cap, &n) != 1)
    n = 0;
  return n;
}

const char *fb_tls_error(const fb_tls *t) { return t->error; }

const char *fb_tls_version(const fb_tls *t) {
  return SSL_get_version(t->ssl);
}

const char *fb_tls_cipher(const fb_tls *t) {
  return SSL_get_cipher_name(t->ssl);
}

const char *fb_tls_peer_subject(const fb_tls *t, char *buf, size_t cap) {
  X509 *peer = SSL_get0_peer_certificate(t->ssl);
  if (!peer || cap == 0)
    return NULL;
  BIO *b = BIO_new(BIO_s_mem());
  if (!b)
    return NULL;
  X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
  size_t n = 0;
  if (BIO_read_ex(b, buf, cap - 1, &n) != 1)
    n = 0;
  buf[n] = 0;
  BIO_free(b);
  return buf;
}
