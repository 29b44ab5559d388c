/*
 * test_multipart.c - multipart bodies: the boundary of a Content-Type (plain,
 * double- or single-quoted as apitools sends it), the parts between
 * delimiters with each body exactly its bytes (CRLF or LF framing, binary
 * bodies), and the header lines of a part's head.
 */
#include <stdlib.h>

#include "multipart.h"
#include "unit.h"

#define IOV(s) h2o_iovec_init((s), strlen(s))
/* A literal that may hold NULs: its length is its size. */
#define IOV_LIT(s) h2o_iovec_init((s), sizeof(s) - 1)

static bool iov_is(h2o_iovec_t v, const char *bytes, size_t len)
{
    return v.len == len && (len == 0 || memcmp(v.base, bytes, len) == 0);
}
#define IOV_IS(v, s) iov_is((v), (s), strlen(s))

/* --- multipart_boundary --- */

/* The boundary of type as a NUL-terminated string in out; false when there is none. */
static bool boundary_of(const char *type, char *out, size_t cap)
{
    h2o_iovec_t b = {NULL, 0};
    if (!multipart_boundary(IOV(type), &b))
        return false;
    CHECK(b.base != NULL && b.len < cap);
    if (b.base == NULL || b.len >= cap)
        return false;
    /* the boundary points into the Content-Type itself */
    CHECK(b.base >= type && b.base + b.len <= type + strlen(type));
    memcpy(out, b.base, b.len);
    out[b.len] = '\0';
    return true;
}

static void test_boundary(void)
{
    char b[128];

    CHECK(boundary_of("multipart/related; boundary=abc123", b, sizeof(b)));
    CHECK_STR(b, "abc123");
    CHECK(boundary_of("multipart/related;boundary=abc123", b, sizeof(b)));
    CHECK_STR(b, "abc123");
    CHECK(boundary_of("multipart/mixed; boundary=batch_x", b, sizeof(b)));
    CHECK_STR(b, "batch_x");

    /* double quotes: what they enclose, spaces and semicolons included */
    CHECK(boundary_of("multipart/related; boundary=\"a b;c=d\"", b, sizeof(b)));
    CHECK_STR(b, "a b;c=d");
    /* apitools (gsutil, gcloud storage) quotes it with single quotes */
    CHECK(boundary_of("multipart/related; boundary='===============5290219337925457489=='", b, sizeof(b)));
    CHECK_STR(b, "===============5290219337925457489==");

    /* other parameters before and after */
    CHECK(boundary_of("multipart/form-data; charset=utf-8; boundary=xyz; foo=bar", b, sizeof(b)));
    CHECK_STR(b, "xyz");
    CHECK(boundary_of("multipart/form-data;charset=utf-8;boundary=xyz;foo=bar", b, sizeof(b)));
    CHECK_STR(b, "xyz");
    CHECK(boundary_of("multipart/related; type=\"application/json\"; boundary=\"q=1\"; start=\"<a>\"", b, sizeof(b)));
    CHECK_STR(b, "q=1");
    CHECK(boundary_of("multipart/related; boundary='--x--'; charset=utf-8", b, sizeof(b)));
    CHECK_STR(b, "--x--");

    /* missing */
    h2o_iovec_t out = {NULL, 0};
    CHECK(!multipart_boundary(IOV("multipart/related"), &out));
    CHECK(!multipart_boundary(IOV("multipart/related; charset=utf-8"), &out));
    CHECK(!multipart_boundary(IOV("application/json; charset=UTF-8"), &out));
    CHECK(!multipart_boundary(IOV(""), &out));
    CHECK(!multipart_boundary(h2o_iovec_init(NULL, 0), &out));
    /* empty */
    CHECK(!multipart_boundary(IOV("multipart/related; boundary="), &out));
    CHECK(!multipart_boundary(IOV("multipart/related; boundary=; charset=utf-8"), &out));
    CHECK(!multipart_boundary(IOV("multipart/related; boundary=\"\""), &out));
    CHECK(!multipart_boundary(IOV("multipart/related; boundary=''"), &out));
    /* an opening quote never closed */
    CHECK(!multipart_boundary(IOV("multipart/related; boundary=\"abc"), &out));
    CHECK(!multipart_boundary(IOV("multipart/related; boundary='abc"), &out));

    /* the Content-Type need not be NUL-terminated: only its length counts */
    const char *longer = "multipart/related; boundary=abcdef";
    CHECK(multipart_boundary(h2o_iovec_init(longer, strlen(longer) - 3), &out));
    CHECK(IOV_IS(out, "abc"));
    CHECK(!multipart_boundary(h2o_iovec_init(longer, 20), &out)); /* cut before "boundary=" */
}

/* --- multipart_for_each --- */

#define MAX_PARTS 8

typedef struct collected {
    size_t count;
    multipart_part_t parts[MAX_PARTS];
} collected_t;

static void collect(void *ctx, const multipart_part_t *part)
{
    collected_t *c = ctx;
    if (c->count < MAX_PARTS)
        c->parts[c->count] = *part;
    c->count++;
}

/* The parts of body with boundary; the count multipart_for_each returns must match the callbacks. */
static size_t parts_of(h2o_iovec_t body, const char *boundary, collected_t *c)
{
    memset(c, 0, sizeof(*c));
    size_t n = multipart_for_each(body, IOV(boundary), collect, c);
    CHECK(n == c->count);
    return n;
}

static void test_crlf_and_lf(void)
{
    collected_t c;
    const char *crlf = "--b1\r\n"
                       "Content-Type: application/json; charset=UTF-8\r\n"
                       "\r\n"
                       "{\"name\":\"a\"}\r\n"
                       "--b1\r\n"
                       "Content-Type: text/plain\r\n"
                       "\r\n"
                       "hello\r\n"
                       "--b1--\r\n";
    CHECK(parts_of(IOV(crlf), "b1", &c) == 2);
    CHECK(c.parts[0].has_body && c.parts[1].has_body);
    CHECK(IOV_IS(c.parts[0].head, "Content-Type: application/json; charset=UTF-8"));
    CHECK(IOV_IS(c.parts[0].body, "{\"name\":\"a\"}"));
    CHECK(IOV_IS(c.parts[1].head, "Content-Type: text/plain"));
    CHECK(IOV_IS(c.parts[1].body, "hello"));
    /* the parts point into the body */
    CHECK(c.parts[1].body.base == strstr(crlf, "hello"));

    const char *lf = "--b1\n"
                     "Content-Type: application/json\n"
                     "\n"
                     "{\"name\":\"a\"}\n"
                     "--b1\n"
                     "Content-Type: text/plain\n"
                     "\n"
                     "hello\n"
                     "--b1--\n";
    CHECK(parts_of(IOV(lf), "b1", &c) == 2);
    CHECK(c.parts[0].has_body && c.parts[1].has_body);
    CHECK(IOV_IS(c.parts[0].head, "Content-Type: application/json"));
    CHECK(IOV_IS(c.parts[0].body, "{\"name\":\"a\"}"));
    CHECK(IOV_IS(c.parts[1].head, "Content-Type: text/plain"));
    CHECK(IOV_IS(c.parts[1].body, "hello"));

    /* a head of several lines: the head ends before the blank line, line breaks inside it kept */
    const char *two_lines = "--b\r\nContent-Type: text/plain\r\nContent-ID: <x>\r\n\r\nbody\r\n--b--";
    CHECK(parts_of(IOV(two_lines), "b", &c) == 1);
    CHECK(IOV_IS(c.parts[0].head, "Content-Type: text/plain\r\nContent-ID: <x>"));
    CHECK(IOV_IS(c.parts[0].body, "body"));

    /* an empty body */
    const char *empty = "--b\r\nContent-Type: text/plain\r\n\r\n\r\n--b--\r\n";
    CHECK(parts_of(IOV(empty), "b", &c) == 1);
    CHECK(c.parts[0].has_body && c.parts[0].body.len == 0);
}

static void test_binary_bodies(void)
{
    collected_t c;

    /* CRLF framing: the body's own trailing CRLF stays, the delimiter's goes */
    static const char crlf_tail[] = "--B\r\nContent-Type: application/octet-stream\r\n\r\n"
                                    "\x00\x01line\r\n"
                                    "\r\n--B--\r\n";
    CHECK(parts_of(IOV_LIT(crlf_tail), "B", &c) == 1);
    CHECK(c.parts[0].has_body);
    CHECK(iov_is(c.parts[0].body, "\x00\x01line\r\n", 8));

    /* LF framing of the same bytes */
    static const char lf_tail[] = "--B\nContent-Type: application/octet-stream\n\n"
                                  "\x00\x01line\r\n"
                                  "\n--B--\n";
    CHECK(parts_of(IOV_LIT(lf_tail), "B", &c) == 1);
    CHECK(iov_is(c.parts[0].body, "\x00\x01line\r\n", 8));

    /* a body ending in LF inside CRLF framing */
    static const char lf_in_crlf[] = "--B\r\nContent-Type: text/plain\r\n\r\nx\n\r\n--B--\r\n";
    CHECK(parts_of(IOV_LIT(lf_in_crlf), "B", &c) == 1);
    CHECK(iov_is(c.parts[0].body, "x\n", 2));

    /* "--", blank lines, NULs inside the body are bytes like any other (a head ends at the first blank line) */
    static const char inner[] = "--B\r\nContent-Type: application/octet-stream\r\n\r\n"
                                "--\r\n\r\n-- x\x00\xff-\r\n\r\n"
                                "\r\n--B\r\nContent-Type: text/plain\r\n\r\nnext\r\n--B--\r\n";
    CHECK(parts_of(IOV_LIT(inner), "B", &c) == 2);
    CHECK(c.parts[0].has_body);
    CHECK(IOV_IS(c.parts[0].head, "Content-Type: application/octet-stream"));
    static const char inner_body[] = "--\r\n\r\n-- x\x00\xff-\r\n\r\n";
    CHECK(iov_is(c.parts[0].body, inner_body, sizeof(inner_body) - 1));
    CHECK(IOV_IS(c.parts[1].body, "next"));

    /* every byte value, then CRLF CRLF, as a media part */
    char body[1024];
    size_t n = 0;
    const char *head = "--=_b\r\nContent-Type: application/octet-stream\r\n\r\n";
    memcpy(body + n, head, strlen(head));
    n += strlen(head);
    size_t media_at = n;
    for (int i = 0; i < 256; i++)
        body[n++] = (char)i;
    memcpy(body + n, "\r\n\r\n", 4);
    n += 4;
    size_t media_len = n - media_at;
    memcpy(body + n, "\r\n--=_b--\r\n", 11);
    n += 11;
    CHECK(parts_of(h2o_iovec_init(body, n), "=_b", &c) == 1);
    CHECK(c.parts[0].body.base == body + media_at && c.parts[0].body.len == media_len);
}

static void test_heads_without_body(void)
{
    collected_t c;

    /* no blank line: a head only */
    const char *no_blank = "--b\r\nContent-Type: text/plain\r\n--b\r\nContent-ID: <2>\r\n\r\ntwo\r\n--b--\r\n";
    CHECK(parts_of(IOV(no_blank), "b", &c) == 2);
    CHECK(!c.parts[0].has_body);
    CHECK(IOV_IS(c.parts[0].head, "Content-Type: text/plain"));
    CHECK(c.parts[0].body.len == 0);
    CHECK(c.parts[1].has_body && IOV_IS(c.parts[1].body, "two"));

    const char *lf = "--b\nContent-Type: text/plain\n--b--\n";
    CHECK(parts_of(IOV(lf), "b", &c) == 1);
    CHECK(!c.parts[0].has_body && IOV_IS(c.parts[0].head, "Content-Type: text/plain"));

    /* delimiters back to back: an empty part */
    const char *back_to_back = "--b\r\n--b--\r\n";
    CHECK(parts_of(IOV(back_to_back), "b", &c) == 1);
    CHECK(!c.parts[0].has_body && c.parts[0].head.len == 0 && c.parts[0].body.len == 0);
}

static void test_framing(void)
{
    collected_t c;

    /* the closing delimiter ends the parts; an epilogue after it is no part */
    const char *closing = "--b\r\nA: 1\r\n\r\none\r\n--b--\r\nepilogue text\r\n";
    CHECK(parts_of(IOV(closing), "b", &c) == 1);
    CHECK(IOV_IS(c.parts[0].body, "one"));
    /* nor is anything after a final delimiter without a line break */
    CHECK(parts_of(IOV("--b\r\nA: 1\r\n\r\none\r\n--b--"), "b", &c) == 1);
    /* no closing delimiter at all: the last part is not delimited, so not a part */
    CHECK(parts_of(IOV("--b\r\nA: 1\r\n\r\none\r\n--b\r\nA: 2\r\n\r\ntwo"), "b", &c) == 1);
    CHECK(IOV_IS(c.parts[0].body, "one"));

    /* preamble text before the first delimiter is skipped */
    const char *preamble = "This is a message with multiple parts in MIME format.\r\n"
                           "--b\r\nA: 1\r\n\r\none\r\n--b\r\nA: 2\r\n\r\ntwo\r\n--b--\r\n";
    CHECK(parts_of(IOV(preamble), "b", &c) == 2);
    CHECK(IOV_IS(c.parts[0].head, "A: 1") && IOV_IS(c.parts[0].body, "one"));
    CHECK(IOV_IS(c.parts[1].head, "A: 2") && IOV_IS(c.parts[1].body, "two"));

    /* transport padding after a delimiter: the part starts on the next line */
    CHECK(parts_of(IOV("--b  \r\nA: 1\r\n\r\none\r\n--b--\r\n"), "b", &c) == 1);
    CHECK(IOV_IS(c.parts[0].head, "A: 1") && IOV_IS(c.parts[0].body, "one"));

    /* no delimiter, another boundary, nothing */
    CHECK(parts_of(IOV("just text\r\n"), "b", &c) == 0);
    CHECK(parts_of(IOV("--other\r\nA: 1\r\n\r\none\r\n--other--\r\n"), "zz", &c) == 0);
    CHECK(parts_of(IOV(""), "b", &c) == 0);
    CHECK(parts_of(h2o_iovec_init(NULL, 0), "b", &c) == 0);
    CHECK(parts_of(IOV("--b\r\nA: 1\r\n\r\none\r\n--b--\r\n"), "", &c) == 0);

    /* RFC 2046 caps a boundary at 70 characters: a longer one is ignored */
    char b70[71], b71[72], body[512];
    memset(b70, 'x', 70);
    b70[70] = '\0';
    memset(b71, 'x', 71);
    b71[71] = '\0';
    snprintf(body, sizeof(body), "--%s\r\nA: 1\r\n\r\none\r\n--%s--\r\n", b70, b70);
    CHECK(parts_of(IOV(body), b70, &c) == 1);
    CHECK(IOV_IS(c.parts[0].body, "one"));
    snprintf(body, sizeof(body), "--%s\r\nA: 1\r\n\r\none\r\n--%s--\r\n", b71, b71);
    CHECK(parts_of(IOV(body), b71, &c) == 0);
}

/*
 * RFC 2046 5.1.1: a delimiter is "--boundary" at the start of a line; the
 * same characters inside a line are body bytes. Python's email generator
 * (apitools, so gsutil) only makes sure no *line* is a delimiter.
 */
static void test_delimiter_mid_line(void)
{
    collected_t c;
    static const char body[] = "--B\r\nContent-Type: application/octet-stream\r\n\r\n"
                               "abc--B-def\r\n"
                               "\r\n--B--\r\n";
    CHECK(parts_of(IOV_LIT(body), "B", &c) == 1);
    CHECK(IOV_IS(c.parts[0].body, "abc--B-def\r\n"));
}

/*
 * RFC 2046 5.1.1: "a body part that starts with a blank line ... is a body
 * part for which all default values are to be assumed": an empty head, the
 * body after the blank line.
 */
static void test_part_without_headers(void)
{
    collected_t c;
    const char *crlf = "--b\r\n\r\nraw bytes\r\n--b--\r\n";
    CHECK(parts_of(IOV(crlf), "b", &c) == 1);
    CHECK(c.parts[0].has_body);
    CHECK(c.parts[0].head.len == 0);
    CHECK(IOV_IS(c.parts[0].body, "raw bytes"));

    const char *lf = "--b\n\nraw bytes\n--b--\n";
    CHECK(parts_of(IOV(lf), "b", &c) == 1);
    CHECK(c.parts[0].has_body && c.parts[0].head.len == 0);
    CHECK(IOV_IS(c.parts[0].body, "raw bytes"));

    /* the body's own blank line must not become the end of a head */
    const char *blank_inside = "--b\r\n\r\nfirst\r\n\r\nsecond\r\n--b--\r\n";
    CHECK(parts_of(IOV(blank_inside), "b", &c) == 1);
    CHECK(c.parts[0].has_body && c.parts[0].head.len == 0);
    CHECK(IOV_IS(c.parts[0].body, "first\r\n\r\nsecond"));
}

/* --- multipart_header --- */

static bool header_is(h2o_iovec_t head, const char *name, const char *expected)
{
    h2o_iovec_t v = {NULL, 0};
    return multipart_header(head, name, &v) && IOV_IS(v, expected);
}

static void test_header(void)
{
    const char *crlf = "Content-Type: application/json; charset=UTF-8\r\n"
                       "content-id:   <item 1>  \r\n"
                       "X-Empty:\r\n"
                       "X-Note: Content-Length: 5\r\n"
                       "MIME-Version: 1.0";
    h2o_iovec_t head = IOV(crlf), v;
    CHECK(header_is(head, "content-type", "application/json; charset=UTF-8"));
    CHECK(header_is(head, "Content-Type", "application/json; charset=UTF-8"));
    CHECK(header_is(head, "CONTENT-TYPE", "application/json; charset=UTF-8"));
    CHECK(header_is(head, "Content-ID", "<item 1>")); /* trimmed both sides, inner space kept */
    CHECK(header_is(head, "x-empty", ""));
    CHECK(header_is(head, "mime-version", "1.0")); /* the last line has no line break */
    CHECK(header_is(head, "x-note", "Content-Length: 5"));
    /* absent: a name only inside another line's value, a prefix of a name, a longer name */
    CHECK(!multipart_header(head, "content-length", &v));
    CHECK(!multipart_header(head, "content", &v));
    CHECK(!multipart_header(head, "content-type-x", &v));
    CHECK(!multipart_header(head, "x-absent", &v));

    const char *lf = "Content-Type: text/plain\nMIME-Version: 1.0\nContent-Transfer-Encoding:  binary \n";
    head = IOV(lf);
    CHECK(header_is(head, "content-type", "text/plain"));
    CHECK(header_is(head, "mime-version", "1.0"));
    CHECK(header_is(head, "content-transfer-encoding", "binary"));
    CHECK(!multipart_header(head, "content-id", &v));

    /* the first of a repeated header */
    CHECK(header_is(IOV("A: 1\r\nA: 2\r\n"), "a", "1"));
    /* only the head's length counts */
    CHECK(!multipart_header(h2o_iovec_init(crlf, 10), "content-type", &v));
    CHECK(!multipart_header(h2o_iovec_init(NULL, 0), "content-type", &v));
    CHECK(!multipart_header(IOV(""), "content-type", &v));
}

/* What gsutil (apitools, Python's email package) sends for a multipart upload: LF breaks, a single-quoted boundary. */
static void test_gsutil_upload(void)
{
    const char *content_type = "multipart/related; boundary='===============5290219337925457489=='";
    const char *body = "--===============5290219337925457489==\n"
                       "Content-Type: application/json\n"
                       "MIME-Version: 1.0\n"
                       "\n"
                       "{\"bucket\": \"my-bucket\", \"contentType\": \"text/plain\", \"metadata\": {\"color\": \"blue\"}, "
                       "\"name\": \"notes/hello.txt\"}\n"
                       "--===============5290219337925457489==\n"
                       "Content-Type: text/plain\n"
                       "MIME-Version: 1.0\n"
                       "Content-Transfer-Encoding: binary\n"
                       "\n"
                       "hello world\n"
                       "\n"
                       "--===============5290219337925457489==--\n";
    h2o_iovec_t boundary;
    CHECK(multipart_boundary(IOV(content_type), &boundary));
    CHECK(IOV_IS(boundary, "===============5290219337925457489=="));
    collected_t c;
    memset(&c, 0, sizeof(c));
    CHECK(multipart_for_each(IOV(body), boundary, collect, &c) == 2);
    CHECK(c.count == 2);
    if (c.count != 2)
        return;
    h2o_iovec_t v;
    CHECK(c.parts[0].has_body && c.parts[1].has_body);
    CHECK(header_is(c.parts[0].head, "content-type", "application/json"));
    CHECK(IOV_IS(c.parts[0].body, "{\"bucket\": \"my-bucket\", \"contentType\": \"text/plain\", \"metadata\": "
                                  "{\"color\": \"blue\"}, \"name\": \"notes/hello.txt\"}"));
    CHECK(header_is(c.parts[1].head, "content-type", "text/plain"));
    CHECK(header_is(c.parts[1].head, "content-transfer-encoding", "binary"));
    CHECK(!multipart_header(c.parts[1].head, "content-length", &v));
    /* the object's bytes: the file's own newline stays, the one before the delimiter goes */
    CHECK(IOV_IS(c.parts[1].body, "hello world\n"));
}

int main(void)
{
    test_boundary();
    test_crlf_and_lf();
    test_binary_bodies();
    test_heads_without_body();
    test_framing();
    test_delimiter_mid_line();
    test_part_without_headers();
    test_header();
    test_gsutil_upload();
    UNIT_DONE();
}
