/*
 * lua_http.c -- HTTP/1.1 message parsing for lua/fusebox/http.lua, on
 * Debian's http-parser (libhttp-parser): never a hand-written parser.
 *
 * A parser userdata takes the bytes of a stream in chunks (feed) and
 * hands back one complete message at a time as a table; it stops after
 * each message, so pipelined requests come out one by one and the caller
 * keeps the bytes not consumed yet. Bodies over the parser's limit fail
 * the message, so a client cannot make the server buffer without bound;
 * headers are bounded by http-parser itself (HTTP_MAX_HEADER_SIZE).
 */
#include "lua_util.h"

#include <ctype.h>
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#define FBL_HTTP_PARSER "fusebox.http_parser"

typedef struct buf {
  char *p;
  size_t n, cap;
} buf;

typedef struct hparser {
  http_parser p;
  buf url, headers, body; /* headers: "name\0value\0" pairs, name lowercased */
  size_t max_body;
  int in_value;           /* the last header callback was a value */
  int complete;
  int too_large;
  int head;               /* a response to HEAD: it has no body */
  int closed;             /* __gc ran: buffers freed, every method refuses */
} hparser;

static int buf_add(buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1)
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

static hparser *of(http_parser *p) { return (hparser *)p; }

static int on_message_begin(http_parser *p) {
  hparser *h = of(p);
  h->url.n = h->headers.n = h->body.n = 0;
  h->in_value = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  return buf_add(&of(p)->url, at, n);
}

/* Field names arrive in pieces too: a new name starts after a value. */
static int on_header_field(http_parser *p, const char *at, size_t n) {
  hparser *h = of(p);
  if (h->in_value && buf_add(&h->headers, "", 1) < 0)
    return -1;
  h->in_value = 0;
  size_t start = h->headers.n;
  if (buf_add(&h->headers, at, n) < 0)
    return -1;
  for (size_t i = start; i < h->headers.n; i++)
    h->headers.p[i] = (char)tolower((unsigned char)h->headers.p[i]);
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  hparser *h = of(p);
  if (!h->in_value && buf_add(&h->headers, "", 1) < 0)
    return -1;
  h->in_value = 1;
  return buf_add(&h->headers, at, n);
}

static int on_headers_complete(http_parser *p) {
  hparser *h = of(p);
  if (h->in_value && buf_add(&h->headers, "", 1) < 0)
    return -1;
  h->in_value = 0;
  return h->head ? 1 : 0; /* 1: skip the body */
}

static int on_body(http_parser *p, const char *at, size_t n) {
  hparser *h = of(p);
  if (h->body.n + n > h->max_body) {
    h->too_large = 1;
    return -1;
  }
  return buf_add(&h->body, at, n);
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
};

/* Pushes headers as a table; a repeated field's values are joined
 * with ", " (RFC 9110 5.3). */
static void push_headers(lua_State *L, const buf *b) {
  lua_newtable(L);
  size_t i = 0;
  while (i < b->n) {
    const char *name = b->p + i;
    i += strlen(name) + 1;
    const char *value = i < b->n ? b->p + i : "";
    i += strlen(value) + 1;
    lua_getfield(L, -1, name);
    if (lua_isstring(L, -1)) {
      lua_pushliteral(L, ", ");
      lua_pushstring(L, value);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushstring(L, value);
    }
    lua_setfield(L, -2, name);
  }
}

static void push_message(lua_State *L, hparser *h) {
  http_parser *p = &h->p;
  lua_createtable(L, 0, 7);
  if (p->type == HTTP_REQUEST) {
    lua_pushstring(L, http_method_str((enum http_method)p->method));
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, h->url.p ? h->url.p : "", h->url.n);
    lua_setfield(L, -2, "url");
  } else {
    lua_pushinteger(L, p->status_code);
    lua_setfield(L, -2, "status");
  }
  lua_pushfstring(L, "%d.%d", p->http_major, p->http_minor);
  lua_setfield(L, -2, "version");
  push_headers(L, &h->headers);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, h->body.p ? h->body.p : "", h->body.n);
  lua_setfield(L, -2, "body");
  lua_pushboolean(L, http_should_keep_alive(p));
  lua_setfield(L, -2, "keep_alive");
}

static hparser *check_parser(lua_State *L) {
  hparser *h = luaL_checkudata(L, 1, FBL_HTTP_PARSER);
  if (h->closed)
    luaL_argerror(L, 1, FBL_HTTP_PARSER " is closed");
  return h;
}

/* Runs the parser over data; pushes consumed and the message when one
 * completed, or nil and the reason when the input is not HTTP. */
static int execute(lua_State *L, hparser *h, const char *data, size_t len) {
  h->complete = 0;
  size_t used = http_parser_execute(&h->p, &settings, data, len);
  enum http_errno err = HTTP_PARSER_ERRNO(&h->p);
  if (err == HPE_PAUSED)
    http_parser_pause(&h->p, 0);
  else if (err != HPE_OK) {
    lua_pushnil(L);
    lua_pushstring(L, h->too_large ? "body too large"
                                   : http_errno_description(err));
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)used);
  if (!h->complete)
    return 1;
  push_message(L, h);
  return 2;
}

/* parser:feed(data) -> consumed [, message] | nil, err. After a message
 * the parser stops: feed it what was not consumed. */
static int parser_feed(lua_State *L) {
  hparser *h = check_parser(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  return execute(L, h, data, len);
}

/* parser:finish() -> message | nil [, err]: the stream ended; a response
 * delimited by the end of the connection completes here. */
static int parser_finish(lua_State *L) {
  hparser *h = check_parser(L);
  int n = execute(L, h, NULL, 0);
  if (n == 2 && lua_isnil(L, -2))
    return 2;
  return h->complete ? 1 : 0;
}

/* parser:take_body() -> the body bytes parsed so far, which the parser
 * then forgets: reads a streamed response (etcd's watch) as it arrives. */
static int parser_take_body(lua_State *L) {
  hparser *h = check_parser(L);
  lua_pushlstring(L, h->body.p ? h->body.p : "", h->body.n);
  h->body.n = 0;
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
  free(h->url.p);
  free(h->headers.p);
  free(h->body.p);
  memset(h, 0, sizeof *h);
  h->closed = 1;
  return 0;
}

/* core.http_parser(kind, max_body [, head]) -> a parser of requests or
 * responses ("request" | "response"); head: the response is to HEAD. */
static int parser_new(lua_State *L) {
  static const char *const kinds[] = {"request", "response", NULL};
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  double max_body = luaL_checknumber(L, 2);
  int head = lua_toboolean(L, 3);
  hparser *h = lua_newuserdata(L, sizeof *h);
  memset(h, 0, sizeof *h);
  http_parser_init(&h->p, kind == 0 ? HTTP_REQUEST : HTTP_RESPONSE);
  h->max_body = (size_t)max_body;
  h->head = head;
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
  if (u.field_set & (1 << UF_PATH)) {
    size_t off = u.field_data[UF_PATH].off;
    size_t end = u.field_set & (1 << UF_FRAGMENT)
                     ? (size_t)u.field_data[UF_FRAGMENT].off - 1
                     : len;
    lua_pushlstring(L, url + off, end - off);
  } else if (u.field_set & (1 << UF_QUERY)) {
    lua_pushfstring(L, "/?%s", url + u.field_data[UF_QUERY].off);
  } else {
    lua_pushliteral(L, "/");
  }
  return 4;
}

static const luaL_Reg parser_methods[] = {
    {"feed", parser_feed},
    {"finish", parser_finish},
    {"take_body", parser_take_body},
    {"status", parser_status},
    {NULL, NULL},
};

static const luaL_Reg http_functions[] = {
    {"http_parser", parser_new},
    {"http_parse_url", parse_url},
    {NULL, NULL},
};

void fbl_open_http(lua_State *L, int rt_idx) {
  fbl_new_plain_class(L, FBL_HTTP_PARSER, parser_gc, parser_methods, rt_idx);
  lua_pushvalue(L, rt_idx);
  luaL_setfuncs(L, http_functions, 1);
}
