/*
 * token.c - finding the bearer token. Flags win over the environment, as
 * everywhere else in larderctl: a --token-file typed on the command line must
 * not be silently overridden by a LARDER_TOKEN exported long ago, which would
 * act as another identity. Giving both flags is a usage error for the same
 * reason. The token never appears in a message, and copies are wiped.
 */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A token is one line; more than this is not a token file. */
#define TOKEN_FILE_MAX 8192

/* Whether every byte may stand in an Authorization header: visible ASCII, so no header injection. */
static bool token_is_printable(const char *token)
{
    for (const char *p = token; *p != '\0'; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return false;
    return true;
}

static int take_token(ctl_t *ctl, const char *token, const char *source)
{
    if (token[0] == '\0')
        return ctl_fail(ctl, CTL_USAGE, "the token from %s is empty", source);
    if (!token_is_printable(token))
        return ctl_fail(ctl, CTL_USAGE, "the token from %s has a blank or control character in it", source);
    ctl->token = strdup(token);
    if (ctl->token == NULL)
        return ctl_fail(ctl, CTL_FAILED, "out of memory");
    return CTL_OK;
}

/* A file others can read leaks the token; larder warns about its own token file the same way. A pipe
 * (--token-file <(command)) has no such mode to judge, so only regular files are checked. */
static void warn_if_exposed(const ctl_t *ctl, int fd, const char *path)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0)
        ctl_warn(ctl, "token file %s is readable by others (mode %03o); chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
}

/* Reads up to cap - 1 bytes, stopping at the first newline; the byte count, or -1 with errno set. */
static ssize_t read_first_line(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len < cap - 1 && memchr(buf, '\n', len) == NULL) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

/* The first line with blanks trimmed off both ends, in place. */
static char *trimmed_first_line(char *text)
{
    text[strcspn(text, "\r\n")] = '\0';
    while (*text == ' ' || *text == '\t')
        text++;
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        text[--len] = '\0';
    return text;
}

static int token_from_file(ctl_t *ctl, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ctl_fail(ctl, CTL_USAGE, "cannot read token file %s: %s", path, strerror(errno));
    warn_if_exposed(ctl, fd, path);
    char buf[TOKEN_FILE_MAX];
    ssize_t len = read_first_line(fd, buf, sizeof(buf));
    int saved = errno;
    /* read-only: close cannot lose data, and the read's outcome is what matters */
    (void)close(fd);
    int rc;
    if (len < 0)
        rc = ctl_fail(ctl, CTL_USAGE, "cannot read token file %s: %s", path, strerror(saved));
    else if ((size_t)len == sizeof(buf) - 1 && memchr(buf, '\n', (size_t)len) == NULL)
        rc = ctl_fail(ctl, CTL_USAGE, "token file %s: the first line is longer than %d bytes", path,
                      TOKEN_FILE_MAX - 1);
    else
        rc = take_token(ctl, trimmed_first_line(buf), "the token file");
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

int token_resolve(ctl_t *ctl, const char *flag_token, const char *token_file)
{
    if (flag_token != NULL && token_file != NULL)
        return ctl_fail(ctl, CTL_USAGE, "give --token or --token-file, not both");
    if (flag_token != NULL)
        return take_token(ctl, flag_token, "--token");
    if (token_file != NULL)
        return token_from_file(ctl, token_file);
    const char *env = getenv("LARDER_TOKEN");
    if (env != NULL && env[0] != '\0')
        return take_token(ctl, env, "LARDER_TOKEN");
    return CTL_OK;
}

void token_dispose(ctl_t *ctl)
{
    if (ctl->token != NULL) {
        explicit_bzero(ctl->token, strlen(ctl->token));
        free(ctl->token);
        ctl->token = NULL;
    }
}
