/*
 * spill.c - where request bodies too large for memory wait.
 *
 * h2o 2.2.5 buffers a whole request body before larder sees it; past 32 MiB
 * it moves the buffer into a file made from a template (mkstemp) and
 * unlinks the file at once, so a crash leaves nothing behind but in the
 * instant between the two. The template's directory is spill_dir. At
 * start-up larder checks it can write there, and removes files a crash in
 * that instant left.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <h2o.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spill.h"

#define SPILL_PREFIX "h2o.b."

/* Removes files left by a crash; returns how many. */
static unsigned remove_stale(int dirfd)
{
    DIR *dir = fdopendir(dup(dirfd));
    if (dir == NULL)
        return 0;
    unsigned removed = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        struct stat st;
        if (strncmp(e->d_name, SPILL_PREFIX, strlen(SPILL_PREFIX)) != 0 ||
            fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
            continue;
        if (unlinkat(dirfd, e->d_name, 0) == 0)
            removed++;
        else
            log_msg(LOG_LEVEL_WARN, "server", "spill_dir: cannot remove stale %s: %s", e->d_name, strerror(errno));
    }
    closedir(dir);
    return removed;
}

int spill_setup(const conf_t *conf)
{
    int written = snprintf(h2o_socket_buffer_mmap_settings.fn_template,
                           sizeof(h2o_socket_buffer_mmap_settings.fn_template), "%s/" SPILL_PREFIX "XXXXXX",
                           conf->spill_dir);
    if (written < 0 || (size_t)written >= sizeof(h2o_socket_buffer_mmap_settings.fn_template)) {
        log_msg(LOG_LEVEL_ERROR, "server", "spill_dir %s: path too long", conf->spill_dir);
        return -1;
    }
    int dirfd = open(conf->spill_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0 || faccessat(dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
        log_msg(LOG_LEVEL_ERROR, "server", "spill_dir %s: not a writable directory (%s); large uploads could not be "
                "received", conf->spill_dir, strerror(errno));
        if (dirfd >= 0)
            close(dirfd);
        return -1;
    }
    unsigned removed = remove_stale(dirfd);
    close(dirfd);
    if (removed != 0)
        log_msg(LOG_LEVEL_INFO, "server", "spill_dir %s: removed %u stale spill file(s) a crash left", conf->spill_dir,
                removed);
    return 0;
}
