/*
 * lua_http.c -- HTTP/1.1 message parsing for lua/fusebox/http.lua, on
 * Debian's http-parser (libhttp-parser): never a hand-written parser.
 *
 * A parser userdata takes the bytes of a stream in chunks (feed) and
 * hands back one complete message at a time as a table; it stops after
 * each message, so pipelined requests come out one by one and the caller
 * keeps the bytes not consumed yet.
 *
 * Everything a peer sends is bounded, and a message over a bound is
 * refused with the status a server answers it with (feed's third value):
 *   URL                     8 KiB                    414
 *   header section          80 KiB (http-parser's)  431
 *   header fields           100 (trailers included)  431
 *   body                    max_body (the caller's)  413, as soon as
 *                                                    Content-Length or a
 *                                                    chunk's size says so
 * and so is what HTTP/1.1 leaves to the recipient to refuse (RFC 9112):
 * a version other than 1.x (505; a request line without one, 400), a
 * transfer coding other than "chunked" alone (501), Content-Length with
 * Transfer-Encoding, a repeated Content-Length and Transfer-Encoding in
 * an HTTP/1.0 message (400: the framing is ambiguous, the smuggler's
 * tool). Every other malformation is a 400. Chunk extensions are skipped
 * by http-parser, never stored: they cost the sender time, not us memory
 * (the server's read and request timeouts bound that time).
 *
 * Whether a stream is refused, and every message before, does not depend
 * on how its bytes are cut into feeds (limits only grow with the bytes);
 * which reason is given may, when a message breaks a limit and the syntax
 * both (http-parser hands data over at a piece's end or a token's).
 *
 * Fields are stored as (offset, length) pairs into one buffer, names
 * lower-cased, so nothing ever scans for a terminator, and every buffer
 * is emptied when a message begins (the fields also once it is handed
 * out; the body stays for take_body): no byte of one message can show up
 * in the next. Trailers (the fields after a chunked body)
 * come out apart, as msg.trailers, never mixed into msg.headers: a field
 * that arrives after the body must not pose as one the peer sent first
 * (an Authorization, a Content-Length).
 */
#include "lua_util.h"

#include <ctype.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FBL_HTTP_PARSER "fusebox.http_parser"

enum {
  MAX_URL = 8 * 1024,
  MAX_FIELDS = 100,
  MAX_HEADER = HTTP_MAX_HEADER_SIZE, /* per header section, CRLFs included */
  KEEP_BUFFER = 64 * 1024,           /* bigger buffers go back after use */
  KEEP_RESET = 4 * 1024,             /* and after a reset, bigger than this */
  NO_TRAILERS = MAX_FIELDS + 1,      /* first_trailer before the body */
};

typedef struct buf {
  char *p;
  size_t n, cap;
} buf;

/* One header or trailer field: its name at headers.p + name, the value
 * right after it. */
typedef struct field {
  size_t name, name_len, value_len;
} field;

typedef struct hparser {
  http_parser p;
  buf url, headers, body; /* headers: the fields' bytes, see field */
  field fields[MAX_FIELDS];
  size_t nfields;
  size_t first_trailer;   /* fields from here on came after the body */
  size_t max_body;
  int in_name;            /* the last field callback was a name */
  int complete;
  int head;               /* a response to HEAD: it has no body */
  int status;             /* why the message was refused: the status */
  char why[128];          /* and the reason */
  int closed;             /* __gc ran: buffers freed, every method refuses */
  int busy;               /* methods pushing from the buffers: idle() */
} hparser;

static int buf_add(buf *b, const char *s, size_t n) {
  if (n == 0) /* b->p may still be NULL */
    return 0;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
      return -1;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  return 0;
}

/* Empties b; a buffer over keep bytes goes back, so an idle connection
 * that once took a large body does not hold it. */
static void buf_empty(buf *b, size_t keep) {
  b->n = 0;
  if (b->cap > keep) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
}

static void buf_reset(buf *b) { buf_empty(b, KEEP_BUFFER); }

static hparser *of(http_parser *p) { return (hparser *)p; }

/* Refuses the message: status and a one-line reason. Returns -1, which
 * stops http-parser. */
static int refuse(hparser *h, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->why, sizeof h->why, fmt, ap);
  va_end(ap);
  h->status = status;
  return -1;
}

static int add(hparser *h, buf *b, const char *s, size_t n) {
  return buf_add(b, s, n) < 0 ? refuse(h, 500, "out of memory") : 0;
}

/* Forgets the fields of the message handed out; its body stays for
 * take_body() until the next message begins. */
static void reset_fields(hparser *h) {
  buf_reset(&h->url);
  buf_reset(&h->headers);
  h->nfields = 0;
  h->first_trailer = NO_TRAILERS;
  h->in_name = 0;
}

/* HTTP/1.x only (a higher minor version reads as 1.1, RFC 9110 2.5);
 * http-parser reads a request line without a version as 0.9. Checked
 * once the header section is complete: a point the bytes decide, not
 * where a feed ended. */
static int check_version(hparser *h) {
  http_parser *p = &h->p;
  if (p->http_major == 1)
    return 0;
  if (p->type == HTTP_REQUEST && p->http_major == 0 && p->http_minor == 9)
    return refuse(h, 400, "request line has no HTTP version");
  return refuse(h, 505, "unsupported HTTP version %d.%d", p->http_major,
                p->http_minor);
}

static int on_message_begin(http_parser *p) {
  reset_fields(of(p));
  buf_reset(&of(p)->body);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  hparser *h = of(p);
  if (h->url.n + n > MAX_URL)
    return refuse(h, 414, "URL too long (limit %d bytes)", MAX_URL);
  return add(h, &h->url, at, n);
}

/* Names and values arrive in pieces: a name starts after a value. */
static int on_header_field(http_parser *p, const char *at, size_t n) {
  hparser *h = of(p);
  if (!h->in_name) {
    if (h->nfields == MAX_FIELDS)
      return refuse(h, 431, "too many header fields (limit %d)", MAX_FIELDS);
    h->fields[h->nfields++] = (field){h->headers.n, 0, 0};
    h->in_name = 1;
  }
  field *f = &h->fields[h->nfields - 1];
  size_t start = h->headers.n;
  if (add(h, &h->headers, at, n) < 0)
    return -1;
  for (size_t i = start; i < h->headers.n; i++)
    h->headers.p[i] = (char)tolower((unsigned char)h->headers.p[i]);
  f->name_len += n;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  hparser *h = of(p);
  size_t section = h->first_trailer == NO_TRAILERS ? 0 : h->first_trailer;
  if (h->nfields == section) /* http-parser never does this */
    return refuse(h, 400, "header value without a name");
  h->in_name = 0;
  if (add(h, &h->headers, at, n) < 0)
    return -1;
  h->fields[h->nfields - 1].value_len += n;
  return 0;
}

static const char *value_of(const hparser *h, const field *f) {
  return h->headers.p + f->name + f->name_len;
}

static int is_named(const hparser *h, const field *f, const char *name) {
  size_t n = strlen(name);
  return f->name_len == n && memcmp(h->headers.p + f->name, name, n) == 0;
}

/* Copies s into out (size >= 4) for a reason line: anything but
 * printable ASCII as '?', "..." when cut. */
static void quote(char *out, size_t size, const char *s, size_t n) {
  size_t keep = n < size ? n : size - 4;
  for (size_t i = 0; i < keep; i++)
    out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
  if (keep < n)
    memcpy(out + keep, "...", 4);
  else
    out[keep] = '\0';
}

static size_t trimmed(const char *v, size_t n) {
  while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  return n;
}

/* The one transfer coding supported is "chunked", alone (RFC 9112 6.1):
 * any other makes the body's framing one this parser does not decode. */
static int check_transfer_coding(hparser *h) {
  char list[64];
  size_t len = 0, count = 0, n = 0;
  const char *v = NULL;
  for (size_t i = 0; i < h->nfields; i++) {
    const field *f = &h->fields[i];
    if (!is_named(h, f, "transfer-encoding"))
      continue;
    v = value_of(h, f);
    n = trimmed(v, f->value_len);
    if (count++ && len + 2 <= sizeof list) {
      memcpy(list + len, ", ", 2);
      len += 2;
    }
    size_t k = n < sizeof list - len ? n : sizeof list - len;
    memcpy(list + len, v, k);
    len += k;
  }
  if (count == 0)
    return 0;
  if (h->p.http_minor == 0)
    return refuse(h, 400, "Transfer-Encoding in an HTTP/1.0 message");
  if (count == 1 && n == 7 && strncasecmp(v, "chunked", 7) == 0 &&
      (h->p.flags & F_CHUNKED))
    return 0;
  char shown[52];
  quote(shown, sizeof shown, list, len);
  return refuse(h, 501, "unsupported transfer coding '%s' (only 'chunked' is)",
                shown);
}

/* Whether a body follows these headers (RFC 9112 6.3). */
static int has_body(const hparser *h) {
  const http_parser *p = &h->p;
  if (p->type == HTTP_REQUEST)
    return 1;
  return !h->head && p->status_code / 100 != 1 && p->status_code != 204 &&
         p->status_code != 304;
}

static int on_headers_complete(http_parser *p) {
  hparser *h = of(p);
  if (check_version(h) < 0 || check_transfer_coding(h) < 0)
    return -1;
  h->in_name = 0;
  h->first_trailer = h->nfields;
  if ((p->flags & F_CONTENTLENGTH) && !(p->flags & F_CHUNKED) &&
      has_body(h) && p->content_length > h->max_body)
    return refuse(h, 413, "body too large (limit %zu bytes)", h->max_body);
  return h->head ? 1 : 0; /* 1: skip the body */
}

/* A chunk announces its size: refused at once when over the limit, as a
 * Content-Length is. */
static int on_chunk_header(http_parser *p) {
  hparser *h = of(p);
  if (p->content_length > h->max_body - h->body.n)
    return refuse(h, 413, "body too large (limit %zu bytes)", h->max_body);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  hparser *h = of(p);
  if (h->body.n + n > h->max_body)
    return refuse(h, 413, "body too large (limit %zu bytes)", h->max_body);
  return add(h, &h->body, at, n);
}

static int on_message_complete(http_parser *p) {
  of(p)->complete = 1;
  http_parser_pause(p, 1); /* one message per feed: see feed() */
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

/* Pushes fields [from, to) as a table; a repeated field's values are
 * joined with ", " (RFC 9110 5.3). */
static void push_fields(lua_State *L, const hparser *h, size_t from,
                        size_t to) {
  lua_createtable(L, 0, (int)(to - from));
  for (size_t i = from; i < to; i++) {
    const field *f = &h->fields[i];
    lua_pushlstring(L, h->headers.p + f->name, f->name_len);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isstring(L, -1)) {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, value_of(h, f), f->value_len);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, value_of(h, f), f->value_len);
    }
    lua_rawset(L, -3);
  }
}

/* The strings every message is made of, made once: upvalues of feed
 * and finish, after the runtime (lua_setfield would hash its key again
 * for every field of every message). */
enum {
  S_METHOD, S_URL, S_STATUS, S_VERSION, S_HEADERS, S_TRAILERS, S_BODY,
  S_KEEP_ALIVE, S_HTTP_1_0, S_HTTP_1_1, NSTRINGS
};
static const char *const strings[NSTRINGS] = {
    "method", "url", "status", "version", "headers", "trailers", "body",
    "keep_alive", "1.0", "1.1",
};
#define STRING(s) lua_upvalueindex(2 + (s))

/* t[key] = the value on top (popped), t just below it. */
static void set(lua_State *L, int key) {
  lua_pushvalue(L, STRING(key));
  lua_insert(L, -2);
  lua_rawset(L, -3);
}

static void push_message(lua_State *L, hparser *h) {
  http_parser *p = &h->p;
  size_t headers = h->first_trailer < h->nfields ? h->first_trailer
                                                 : h->nfields;
  lua_createtable(L, 0, 8);
  if (p->type == HTTP_REQUEST) {
    lua_pushstring(L, http_method_str((enum http_method)p->method));
    set(L, S_METHOD);
    lua_pushlstring(L, h->url.p ? h->url.p : "", h->url.n);
    set(L, S_URL);
  } else {
    lua_pushinteger(L, p->status_code);
    set(L, S_STATUS);
  }
  if (p->http_major == 1 && p->http_minor <= 1) /* the usual: no formatting */
    lua_pushvalue(L, STRING(p->http_minor ? S_HTTP_1_1 : S_HTTP_1_0));
  else
    lua_pushfstring(L, "%d.%d", p->http_major, p->http_minor);
  set(L, S_VERSION);
  push_fields(L, h, 0, headers);
  set(L, S_HEADERS);
  push_fields(L, h, headers, h->nfields);
  set(L, S_TRAILERS);
  lua_pushlstring(L, h->body.p ? h->body.p : "", h->body.n);
  set(L, S_BODY);
  lua_pushboolean(L, http_should_keep_alive(p));
  set(L, S_KEEP_ALIVE);
}

/* Frees a closed parser's buffers. */
static void free_buffers(hparser *h) {
  free(h->url.p);
  free(h->headers.p);
  free(h->body.p);
  memset(h, 0, sizeof *h);
  h->closed = 1;
}

/* A method that pushes from the buffers is done with them (h->busy was
 * raised while it pushed; a count, since a finalizer in one push may run
 * another method of the same parser). Each push may run a finalizer (lua_util.h), which
 * may call __gc by hand: the parser is then closed at once but its
 * buffers, which the push is copying, are freed here, as luv frees a
 * handle in its close callback, not in __gc. Only running out of memory
 * leaves a method before it gets here: those buffers then leak. */
static void idle(hparser *h) {
  if (--h->busy == 0 && h->closed)
    free_buffers(h);
}

static hparser *check_parser(lua_State *L) {
  hparser *h = luaL_checkudata(L, 1, FBL_HTTP_PARSER);
  if (h->closed)
    luaL_argerror(L, 1, FBL_HTTP_PARSER " is closed");
  return h;
}

static int has_field(const hparser *h, const char *name) {
  for (size_t i = 0; i < h->nfields; i++)
    if (is_named(h, &h->fields[i], name))
      return 1;
  return 0;
}

/* Pushes nil, the reason and the status to answer a refused message with. */
static int push_refusal(lua_State *L, hparser *h, enum http_errno err) {
  if (!h->status) {
    switch (err) {
    case HPE_HEADER_OVERFLOW:
      refuse(h, 431, "header section too large (limit %d bytes)", MAX_HEADER);
      break;
    case HPE_UNEXPECTED_CONTENT_LENGTH: /* http-parser: the framing is ambiguous */
      refuse(h, 400, has_field(h, "transfer-encoding")
                         ? "Content-Length together with Transfer-Encoding"
                         : "repeated Content-Length");
      break;
    case HPE_INVALID_TRANSFER_ENCODING:
      refuse(h, 501, "unsupported transfer coding");
      break;
    default:
      refuse(h, 400, "%s", http_errno_description(err));
    }
  }
  lua_pushnil(L);
  lua_pushstring(L, h->why);
  lua_pushinteger(L, h->status);
  return 3;
}

/* Runs the parser over data; pushes consumed and the message when one
 * completed, or nil, the reason and a status when the input is refused. */
static int execute(lua_State *L, hparser *h, const char *data, size_t len) {
  h->complete = 0;
  size_t used = http_parser_execute(&h->p, &settings, data, len);
  enum http_errno err = HTTP_PARSER_ERRNO(&h->p);
  if (err == HPE_PAUSED)
    http_parser_pause(&h->p, 0);
  else if (err != HPE_OK)
    return push_refusal(L, h, err);
  lua_pushinteger(L, (lua_Integer)used);
  if (!h->complete)
    return 1;
  push_message(L, h);
  reset_fields(h);
  return 2;
}

/* parser:feed(data [, init]) -> consumed [, message] | nil, reason,
 * status: parses data from byte init (1 by default), so pipelined
 * messages are read without copying what follows each. After a message
 * the parser stops: feed it what was not consumed. status is the one to
 * answer a refused request with (400, 413, 414, 431, 501, 505); once
 * refused, a parser refuses everything. */
static int parser_feed(lua_State *L) {
  check_parser(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_Integer init = luaL_optinteger(L, 3, 1);
  hparser *h = check_parser(L); /* again: converting a number allocates */
  if (init < 1 || (size_t)init > len + 1)
    return luaL_argerror(L, 3, lua_pushfstring(L, "init must be 1..%f, got %f",
                                               (lua_Number)(len + 1),
                                               (lua_Number)init));
  h->busy++;
  int n = execute(L, h, data + init - 1, len - (size_t)(init - 1));
  idle(h);
  return n;
}

/* parser:finish() -> message | nil [, reason, status]: the stream ended;
 * a response delimited by the end of the connection completes here. */
static int parser_finish(lua_State *L) {
  hparser *h = check_parser(L);
  h->busy++;
  int n = execute(L, h, NULL, 0);
  if (n != 3)
    n = h->complete ? 1 : 0;
  idle(h);
  return n;
}

/* max_body at idx: bytes, math.huge for no limit. */
static double check_max_body(lua_State *L, int idx) {
  double max_body = luaL_checknumber(L, idx);
  if (!(max_body >= 0))
    luaL_argerror(L, idx, lua_pushfstring(L, "max_body must be a non-negative "
                                             "number, got %f", max_body));
  return max_body;
}

/* Makes h a parser of messages of type with nothing parsed yet. */
static void start(hparser *h, enum http_parser_type type, double max_body,
                  int head) {
  http_parser_init(&h->p, type);
  h->max_body = max_body >= (double)SIZE_MAX ? SIZE_MAX : (size_t)max_body;
  h->head = head;
  h->status = 0;
  h->why[0] = '\0';
  h->complete = 0;
  reset_fields(h);
  buf_empty(&h->url, KEEP_RESET);
  buf_empty(&h->headers, KEEP_RESET);
  buf_empty(&h->body, KEEP_RESET);
}

/* parser:reset(max_body [, head]) -> parser: starts over for the next
 * message of a new exchange (its limit, whether it answers HEAD), as a
 * new parser would, keeping the buffers of up to KEEP_RESET bytes: a
 * pooled connection's client reuses one parser for every response
 * instead of allocating one (a userdata with a finalizer) per request,
 * and resets it when the connection goes idle, which then holds no more
 * than those. */
static int parser_reset(lua_State *L) {
  hparser *h = check_parser(L);
  double max_body = check_max_body(L, 2);
  start(h, (enum http_parser_type)h->p.type, max_body, lua_toboolean(L, 3));
  lua_settop(L, 1);
  return 1;
}

/* parser:take_body() -> the body bytes parsed so far, which the parser
 * then forgets: reads a streamed response (etcd's watch) as it arrives. */
static int parser_take_body(lua_State *L) {
  hparser *h = check_parser(L);
  h->busy++;
  lua_pushlstring(L, h->body.p ? h->body.p : "", h->body.n);
  h->body.n = 0;
  idle(h);
  return 1;
}

/* parser:status() -> a response's status once its status line is parsed,
 * else 0 */
static int parser_status(lua_State *L) {
  hparser *h = check_parser(L);
  lua_pushinteger(L, h->p.type == HTTP_RESPONSE && h->p.http_major
                         ? h->p.status_code : 0);
  return 1;
}

static int parser_gc(lua_State *L) {
  hparser *h = fbl_check_gc(L, FBL_HTTP_PARSER);
  if (!h) /* a host holds it */
    return 0;
  h->closed = 1;
  if (!h->busy) /* else the method frees them: idle() */
    free_buffers(h);
  return 0;
}

/* core.http_parser(kind, max_body [, head]) -> a parser of requests or
 * responses ("request" | "response"); max_body: bytes, math.huge for no
 * limit; head: the response is to HEAD. */
static int parser_new(lua_State *L) {
  static const char *const kinds[] = {"request", "response", NULL};
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  double max_body = check_max_body(L, 2);
  int head = lua_toboolean(L, 3);
  hparser *h = lua_newuserdata(L, sizeof *h);
  memset(h, 0, sizeof *h);
  start(h, kind == 0 ? HTTP_REQUEST : HTTP_RESPONSE, max_body, head);
  luaL_getmetatable(L, FBL_HTTP_PARSER);
  lua_setmetatable(L, -2);
  return 1;
}

static void push_field(lua_State *L, const char *url,
                       const struct http_parser_url *u, int f) {
  if (u->field_set & (1 << f))
    lua_pushlstring(L, url + u->field_data[f].off, u->field_data[f].len);
  else
    lua_pushnil(L);
}

/* core.http_parse_url(url) -> scheme, host, port, target | nil, err;
 * target is the path with its query ("/" if absent), port nil if none. */
static int parse_url(lua_State *L) {
  size_t len;
  const char *url = luaL_checklstring(L, 1, &len);
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(url, len, 0, &u) != 0 ||
      !(u.field_set & (1 << UF_HOST))) {
    lua_pushnil(L);
    lua_pushfstring(L, "bad url '%s'", url);
    return 2;
  }
  push_field(L, url, &u, UF_SCHEMA);
  push_field(L, url, &u, UF_HOST);
  if (u.field_set & (1 << UF_PORT))
    lua_pushinteger(L, u.port);
  else
    lua_pushnil(L);
  if (u.field_set & (1 << UF_PATH)) { /* up to the query's end: no '#' */
    size_t off = u.field_data[UF_PATH].off;
    int last = u.field_set & (1 << UF_QUERY) ? UF_QUERY : UF_PATH;
    size_t end = (size_t)u.field_data[last].off + u.field_data[last].len;
    lua_pushlstring(L, url + off, end - off);
  } else if (u.field_set & (1 << UF_QUERY)) {
    lua_pushliteral(L, "/?");
    lua_pushlstring(L, url + u.field_data[UF_QUERY].off,
                    u.field_data[UF_QUERY].len);
    lua_concat(L, 2);
  } else {
    lua_pushliteral(L, "/");
  }
  return 4;
}

/* With the runtime and the strings as upvalues: see STRING. */
static const luaL_Reg message_methods[] = {
    {"feed", parser_feed},
    {"finish", parser_finish},
    {NULL, NULL},
};

static const luaL_Reg parser_methods[] = {
    {"take_body", parser_take_body},
    {"reset", parser_reset},
    {"status", parser_status},
    {NULL, NULL},
};

static const luaL_Reg http_functions[] = {
    {"http_parser", parser_new},
    {"http_parse_url", parse_url},
    {NULL, NULL},
};

void fbl_open_http(lua_State *L, int rt_idx) {
  http_parser_set_max_header_size(MAX_HEADER); /* the bound documented above */
  fbl_new_plain_class(L, FBL_HTTP_PARSER, parser_gc, parser_methods, rt_idx);
  luaL_getmetatable(L, FBL_HTTP_PARSER);
  lua_getfield(L, -1, "methods");
  for (const luaL_Reg *m = message_methods; m->name; m++) {
    lua_pushvalue(L, rt_idx);
    for (int i = 0; i < NSTRINGS; i++)
      lua_pushstring(L, strings[i]);
    lua_pushcclosure(L, m->func, 1 + NSTRINGS);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 2);
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, http_functions, 1);
}
