/*
 * main.c - larder's entry point: configuration, then the server.
 */
#include <stdio.h>
#include <stdlib.h>

#include "conf.h"
#include "proxy.h"

extern char **environ;

int main(int argc, char **argv)
{
    conf_t conf;
    conf_action_t action = CONF_ACTION_RUN;
    char err[1024];
    if (conf_load(&conf, argc, argv, environ, &action, err, sizeof(err)) != 0) {
        fprintf(stderr, "larder: %s\n", err);
        conf_dispose(&conf);
        return 2;
    }
    int status = 0;
    switch (action) {
    case CONF_ACTION_HELP:
        conf_print_help(stdout);
        break;
    case CONF_ACTION_VERSION:
        printf("larder %s\n", LARDER_VERSION);
        break;
    case CONF_ACTION_CHECK:
        conf_print_effective(&conf, stdout);
        break;
    case CONF_ACTION_RUN:
        log_configure(conf.log.level, conf.log.format);
        status = proxy_run(&conf);
        break;
    }
    conf_dispose(&conf);
    return status;
}
